"""A per-user sliding-window rate limit (questions per minute), for the web chat and Slack.

Given the ``frontend`` it guards, it counts each question it turns away in the metrics
(``rag_questions_total{outcome="rate_limited"}``) and logs it, as the assistant does the others.

>>> now = [0.0]
>>> limiter = RateLimiter(per_minute=2, clock=lambda: now[0])
>>> limiter.allow("ann"), limiter.allow("ann"), limiter.allow("ann"), limiter.allow("bob")
(True, True, False, True)
>>> limiter.retry_after("ann")
60.0
>>> now[0] = 60.0
>>> limiter.allow("ann")
True
>>> now[0] = 200.0
>>> limiter.allow("cy"), len(limiter)   # ann and bob, idle for a minute, are forgotten
(True, 1)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from rag.observability import QUESTION_LOG, Metrics, log_event, new_request_id, process_metrics

question_log = logging.getLogger(QUESTION_LOG)


class RateLimiter:
    """At most ``per_minute`` calls per key in any 60-second window (0 means no limit).

    Keys idle for a whole window are forgotten (at most once a window, all at once), so memory
    holds only the users of the last minute or two, however many come and go.
    """

    window_s = 60.0

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        frontend: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.frontend = frontend
        self.metrics = metrics
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def __len__(self) -> int:
        """How many keys are remembered."""
        with self._lock:
            return len(self._calls)

    def allow(self, key: str) -> bool:
        """Count a call for ``key`` and say whether it is within the limit."""
        if self.per_minute <= 0:
            return True
        now = self.clock()
        with self._lock:
            if now - self._swept >= self.window_s:
                self._calls = {k: v for k, v in self._calls.items() if v and v[-1] > now - self.window_s}
                self._swept = now
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - self.window_s:
                calls.popleft()
            limited = len(calls) >= self.per_minute
            if not limited:
                calls.append(now)
        if limited and self.frontend is not None:
            self._count_refusal(self.frontend)
        return not limited

    def _count_refusal(self, frontend: str) -> None:
        (self.metrics or process_metrics()).question(frontend, "rate_limited")
        request_id = new_request_id()
        event = {
            "event": "question",
            "request_id": request_id,
            "frontend": frontend,
            "outcome": "rate_limited",
        }
        log_event(question_log, f"question {request_id} from {frontend}: rate_limited", event)

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may ask again (0 when it may now)."""
        with self._lock:
            calls = self._calls.get(key)
            if self.per_minute <= 0 or not calls or len(calls) < self.per_minute:
                return 0.0
            return max(0.0, calls[0] + self.window_s - self.clock())
