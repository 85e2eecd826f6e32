"""Operations: Prometheus metrics, and one log line per question and per ingest run.

Every front end counts the same way because the answering API (``Assistant``) and the ingest do
the counting; front ends only add what happens before a question reaches the assistant (a rate
limit). Nothing is built at import: ``process_metrics()`` creates the process's instruments on
first use, in Prometheus's default registry (which also carries the process's CPU and memory);
tests pass their own ``Metrics(CollectorRegistry())``::

    from prometheus_client import CollectorRegistry

    metrics = Metrics(CollectorRegistry())
    metrics.question("web", "answered", timings_ms={"total": 120.0}, best_score=0.62)
    body, content_type = metrics.render()       # what GET /metrics returns

Logs: ``configure_logging(settings)`` picks JSON lines (``RAG_LOG_FORMAT=json``, or ``auto`` when
stderr is not a terminal: containers, systemd) or plain text (a terminal), and masks every secret
the settings hold and anything shaped like a token in both. ``log_event`` writes one structured
event (a question, an ingest run); the question text is in it only when the caller puts it there
(the assistant does when ``RAG_LOG_QUESTIONS=true``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from rag.config import Settings

if TYPE_CHECKING:
    from fastapi import APIRouter
    from prometheus_client import CollectorRegistry
    from starlette.requests import Request
    from starlette.responses import Response

STAGES = ("condense", "retrieve", "answer", "first_token", "total")
# "invalid": an empty or too long question, refused before any search.
OUTCOMES = ("answered", "refused", "fallback", "rate_limited", "invalid", "error")
# Seconds: retrieval takes milliseconds, a local LLM's answer seconds to a minute.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Cosine similarity of the best passage; the refusal threshold (min_relevance) sits near 0.4.
SCORE_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

QUESTION_LOG = "rag.questions"
INGEST_LOG = "rag.ingest"


class Metrics:
    """The instruments, registered in ``registry`` (Prometheus's default one when None)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else REGISTRY
        r = self.registry
        self.questions = Counter(
            "rag_questions", "Questions by front end and outcome.", ["frontend", "outcome"], registry=r
        )
        self.stage_seconds = Histogram(
            "rag_stage_seconds",
            "Time per stage of answering a question (first_token and total from the question's arrival).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.best_score = Histogram(
            "rag_best_score",
            "Cosine similarity of each question's best passage.",
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.feedback = Counter("rag_feedback", "Feedback clicks.", ["frontend", "rating"], registry=r)
        self.ingest_runs = Counter("rag_ingest_runs", "Ingest runs by outcome.", ["outcome"], registry=r)
        self.ingest_chunks = Counter(
            "rag_ingest_chunks", "Chunks an ingest added or removed.", ["action"], registry=r
        )
        self.index_chunks = Gauge("rag_index_chunks", "Chunks in the index this process serves.", registry=r)
        self.index_documents = Gauge("rag_index_documents", "Documents in the index.", registry=r)
        self.index_reloads = Counter(
            "rag_index_reloads", "Times a newer index in the store was loaded without a restart.", registry=r
        )
        for frontend in ("web", "slack", "api"):  # so a dashboard sees zeros, not gaps
            for outcome in OUTCOMES:
                self.questions.labels(frontend, outcome)

    def question(
        self,
        frontend: str,
        outcome: str,
        *,
        timings_ms: Mapping[str, float] | None = None,
        best_score: float | None = None,
    ) -> None:
        self.questions.labels(frontend, outcome).inc()
        for stage, ms in (timings_ms or {}).items():
            if stage in STAGES:
                self.stage_seconds.labels(stage).observe(ms / 1000)
        if best_score is not None:
            self.best_score.observe(best_score)

    def feedback_given(self, frontend: str, rating: str) -> None:
        self.feedback.labels(frontend, rating).inc()

    def ingest_run(self, outcome: str, *, added: int = 0, removed: int = 0) -> None:
        self.ingest_runs.labels(outcome).inc()
        if added:
            self.ingest_chunks.labels("added").inc(added)
        if removed:
            self.ingest_chunks.labels("removed").inc(removed)

    def index_size(self, chunks: int, documents: int | None = None) -> None:
        self.index_chunks.set(chunks)
        if documents is not None:
            self.index_documents.set(documents)

    def render(self) -> tuple[bytes, str]:
        """The exposition text of every metric in the registry, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_process: Metrics | None = None
_process_lock = threading.Lock()


def process_metrics() -> Metrics:
    """The process's instruments (built on first use: registering twice is an error)."""
    global _process
    with _process_lock:
        if _process is None:
            _process = Metrics()
        return _process


def metrics_endpoint(metrics: Metrics | None = None) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette/FastAPI endpoint serving ``GET /metrics``::

    app.add_route("/metrics", metrics_endpoint(), methods=["GET"])
    """
    from starlette.responses import Response

    async def endpoint(request: Request) -> Response:
        body, content_type = (metrics or process_metrics()).render()
        return Response(body, media_type=content_type)

    return endpoint


def metrics_router(metrics: Metrics | None = None) -> APIRouter:
    """A FastAPI router with ``GET /metrics`` (kept out of the OpenAPI schema: it is for
    Prometheus, not for API users)."""
    from fastapi import APIRouter

    router = APIRouter()
    router.add_route("/metrics", metrics_endpoint(metrics), methods=["GET"], include_in_schema=False)
    return router


def new_request_id() -> str:
    """A short random id that ties a question's log line to what a user reports."""
    return uuid.uuid4().hex[:16]


# --- logs ---------------------------------------------------------------------------------------

# Shapes of credentials, masked wherever they appear (an exception message quoting a header...).
TOKEN_PATTERNS = re.compile(
    r"xox[a-z]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|sk-[A-Za-z0-9_-]{12,}|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
)
MASK = "**********"


def settings_secrets(settings: Settings) -> list[str]:
    """The secret values ``settings`` holds (tokens, keys, passwords), for masking."""
    found = [
        s.get_secret_value()
        for s in (
            settings.slack_bot_token,
            settings.slack_app_token,
            settings.slack_signing_secret,
            settings.openai_api_key,
        )
        if s is not None
    ]
    found += [pair.split(":", 1)[1] for pair in settings.auth]
    # "not-needed", the API key's placeholder, and very short values would mask ordinary words.
    return [s for s in found if len(s) >= 8 and s != "not-needed"]


class Redactor:
    """Masks the given secrets and anything token-shaped in a string.

    >>> Redactor(["hunter2-long"]).clean("password hunter2-long, token xoxb-123-abc")
    'password **********, token **********'
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return TOKEN_PATTERNS.sub(MASK, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's ``event``
    fields (``log_event``) and the exception, every string masked by ``redactor``."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "event", None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return self.redactor.clean(json.dumps(out, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """The plain ``time level logger: message`` line, masked like the JSON one."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redactor = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.clean(super().format(record))


def log_format(settings: Settings, stream: TextIO) -> str:
    """ "json" or "text": ``RAG_LOG_FORMAT``, where ``auto`` is text on a terminal, JSON elsewhere."""
    if settings.log_format != "auto":
        return settings.log_format
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure_logging(settings: Settings, *, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send the process's logs to ``stream`` (stderr) in the format the settings ask for."""
    stream = stream or sys.stderr
    redactor = Redactor(settings_secrets(settings))
    handler = logging.StreamHandler(stream)
    formatter = JsonFormatter(redactor) if log_format(settings, stream) == "json" else TextFormatter(redactor)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def log_event(
    logger: logging.Logger, message: str, event: Mapping[str, Any], level: int = logging.INFO
) -> None:
    """Log ``message`` carrying ``event``'s fields (each a key of the JSON line)."""
    logger.log(level, message, extra={"event": dict(event)})
