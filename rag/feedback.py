"""Feedback (thumbs up/down) from the web chat and the Slack bot, appended to one JSONL file and
counted in the metrics (``rag_feedback_total``)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rag.observability import Metrics, process_metrics

_lock = threading.Lock()


def record_feedback(
    path: Path,
    *,
    rating: Literal["up", "down"],
    question: str,
    answer: str,
    citations: list[dict[str, Any]],
    channel: str,
    user: str | None = None,
    extra: dict[str, Any] | None = None,
    metrics: Metrics | None = None,
) -> dict[str, Any]:
    """Append one feedback record and return it. ``channel`` is "web" or "slack"; the click is
    counted in ``metrics`` (default: the process's)."""
    if rating not in ("up", "down"):
        raise ValueError("rating must be 'up' or 'down'")
    record: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "channel": channel,
        "user": user,
        "rating": rating,
        "question": question,
        "answer": answer,
        "citations": [
            {k: c.get(k) for k in ("n", "source", "title", "section", "url", "chunk_id", "quote")}
            for c in citations
        ],
    }
    if extra:
        record.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with _lock, path.open("a", encoding="utf-8") as fh:
        fh.write(line)
    (metrics or process_metrics()).feedback_given(channel, rating)
    return record


def read_feedback(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
