"""What an answerer worked out for the last few turns, by question and passages.

The chain asks an answerer why it refused right after it refused (``why_refused``): the answer
to that was computed moments ago, for the same question and passages, by an embedding pass or a
call to the local model that is not worth repeating.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Generic, TypeVar

from rag.retrieval import Passage

V = TypeVar("V")
SIZE = 16  # turns kept: enough for the web server's concurrent requests to find their own


class RecentTurns(Generic[V]):
    """The last ``size`` values put, each under its question and passages (thread-safe)."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._values: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], V] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(question: str, passages: Sequence[Passage]) -> tuple[str, tuple[tuple[str, str], ...]]:
        return question, tuple((p.chunk_id, p.text) for p in passages)

    def get(self, question: str, passages: Sequence[Passage]) -> V | None:
        with self._lock:
            return self._values.get(self._key(question, passages))

    def put(self, question: str, passages: Sequence[Passage], value: V) -> None:
        with self._lock:
            self._values[self._key(question, passages)] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)
