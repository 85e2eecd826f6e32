"""Load: 16 concurrent web users x 10 questions each through ``gradio_client`` against the real
app (``python app.py``, real model, bundled corpus) on loopback. Every request must succeed; the
latency figures (p50/p95/max, throughput) are written to ``test-artifacts/load.json`` and quoted
in docs/deploy.md (no timing assertion: speed depends on the machine).

The per-user rate limit is lifted for the run: all 16 clients come from 127.0.0.1, which the chat
counts as one user.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rag.config import Settings
from tests.conftest import REPO
from tests.test_web_browser import App, start_app_on_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # 16 users against the real app

USERS = 16
QUESTIONS_PER_USER = 10


def golden_questions(limit: int = 40) -> list[str]:
    lines = (REPO / "evals" / "golden.jsonl").read_text().splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    return [i["question"] for i in items if not i.get("history")][:limit]


@pytest.fixture(scope="module")
def load_app(real_index: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    yield from start_app_on_copy(real_index, tmp_path_factory, "load-app", RAG_RATE_LIMIT_PER_MINUTE="0")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def test_16_concurrent_users_ask_10_questions_each_without_errors(load_app: App) -> None:
    from gradio_client import Client

    questions = golden_questions()
    latencies: list[float] = []
    errors: list[str] = []
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(USERS)

    def user(n: int) -> None:
        try:
            client = Client(load_app.url, verbose=False)
        except Exception as exc:  # noqa: BLE001 - counted as an error
            with lock:
                errors.append(f"user {n} could not connect: {exc!r}")
            start.abort()
            return
        start.wait()
        for i in range(QUESTIONS_PER_USER):
            question = questions[(n * QUESTIONS_PER_USER + i) % len(questions)]
            t0 = time.perf_counter()
            try:
                result = client.predict(question=question, api_name="/ask")
            except Exception as exc:  # noqa: BLE001 - counted as an error
                with lock:
                    errors.append(f"user {n} question {i}: {exc!r}")
                continue
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                answers.append(result)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(USERS)]
    wall0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    wall = time.perf_counter() - wall0

    assert errors == []
    assert len(latencies) == USERS * QUESTIONS_PER_USER
    # Every answer is a real one: cited, or a refusal.
    assert all(a["answer"] and (a["citations"] or a["refused"]) for a in answers)
    assert sum(1 for a in answers if a["citations"]) >= 0.8 * len(answers)
    figures = {
        "users": USERS,
        "questions_per_user": QUESTIONS_PER_USER,
        "requests": len(latencies),
        "errors": len(errors),
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "max_s": round(max(latencies), 3),
        "wall_s": round(wall, 1),
        "throughput_rps": round(len(latencies) / wall, 2),
        "answerer": "extractive",
        "concurrency_limit": 4,
    }
    out = REPO / "test-artifacts" / "load.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
