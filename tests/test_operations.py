"""Operations: the metrics a scrape of /metrics shows after a few questions, the log lines
(JSON, no secret, the question only when asked for), the store's unfinished-ingest marker, and
a replica picking up an index another process wrote."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from rag.answering import Answer, AnswererError, Assistant, Passage, QuestionError, open_assistant
from rag.answering.assistant import open_index
from rag.answering.chain import ranked_passages
from rag.answering.extractive import ExtractiveAnswerer
from rag.config import Settings
from rag.feedback import record_feedback
from rag.index.ingest import ingest
from rag.index.lexical import fingerprint
from rag.index.manifest import Manifest
from rag.index.state import IngestUnfinishedError, Writer, mark_done, mark_writing, read_state
from rag.index.store import make_client
from rag.observability import (
    JsonFormatter,
    Metrics,
    Redactor,
    configure_logging,
    log_format,
    metrics_endpoint,
    metrics_router,
    settings_secrets,
)
from rag.ratelimit import RateLimiter
from tests.conftest import make_settings
from tests.fakes import HashingEmbeddings, build_fake_assistant, write_corpus

ON_TOPIC = "What policy does the author call an immense failure?"
OFF_TOPIC = "banana bread recipe with cinnamon"
BOT_TOKEN = "xoxb-1111-2222-abcdefSECRET"
SIGNING_SECRET = "signing-secret-0123456789"
API_KEY = "sk-test-0123456789abcdefSECRET"


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by name and sorted labels."""
    body, _ = metrics.render()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def buckets(metrics: Metrics, name: str, **labels: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of a histogram, in bucket order."""
    found = [
        (float(dict(key)["le"]), v)
        for (n, key), v in samples(metrics).items()
        if n == f"{name}_bucket" and all(dict(key).get(k) == x for k, x in labels.items())
    ]
    return sorted(found)


class Failing:
    """An answerer whose backend is down."""

    name = "remote"

    def stream(self, question: str, passages: Sequence[Passage], history: Sequence[Any]) -> Iterator[str]:
        raise AnswererError("the remote backend is down")
        yield ""  # pragma: no cover - makes this a generator


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def strict(settings: Settings) -> Settings:
    """Settings under which the off-topic question is refused (hashing embeddings make every
    question a little similar to something)."""
    return settings.model_copy(update={"min_relevance": 0.5})


@pytest.fixture
def assistant(strict: Settings, metrics: Metrics) -> Assistant:
    return open_assistant(strict, embeddings=HashingEmbeddings(), ensure_index=True, metrics=metrics)


# --- metrics --------------------------------------------------------------------------------------


def test_a_scrape_counts_questions_by_front_end_and_outcome(assistant: Assistant, metrics: Metrics) -> None:
    assert value(metrics, "rag_questions_total", frontend="web", outcome="answered") == 0
    answers = [assistant.ask(ON_TOPIC, frontend="web")]
    answers += [e for e in assistant.stream(ON_TOPIC, frontend="web") if isinstance(e, Answer)]
    answers.append(assistant.ask(OFF_TOPIC, frontend="slack"))
    assert [a.refused for a in answers] == [False, False, True]
    with pytest.raises(QuestionError):
        assistant.ask("   ", frontend="web")
    limiter = RateLimiter(1, frontend="slack", metrics=metrics)
    assert [limiter.allow("U1"), limiter.allow("U1"), limiter.allow("U2")] == [True, False, True]

    assert value(metrics, "rag_questions_total", frontend="web", outcome="answered") == 2
    assert value(metrics, "rag_questions_total", frontend="slack", outcome="refused") == 1
    assert value(metrics, "rag_questions_total", frontend="web", outcome="invalid") == 1
    assert value(metrics, "rag_questions_total", frontend="slack", outcome="rate_limited") == 1
    assert value(metrics, "rag_questions_total", frontend="web", outcome="refused") == 0

    # Every stage of the three answers observed once, in buckets that only grow up to +Inf.
    for stage in ("condense", "retrieve", "answer", "first_token"):
        assert value(metrics, "rag_stage_seconds_count", stage=stage) == 3
        counts = [c for _, c in buckets(metrics, "rag_stage_seconds", stage=stage)]
        assert counts == sorted(counts) and counts[-1] == 3
    # total also times the invalid question (turned away before any search).
    assert value(metrics, "rag_stage_seconds_count", stage="total") == 4
    expected_total = sum(a.timings_ms["total"] for a in answers) / 1000
    assert expected_total <= value(metrics, "rag_stage_seconds_sum", stage="total") < expected_total + 1

    # Each answer's best passage counted in the buckets at and above its score.
    best = [max(p.similarity for p in a.retrieved) for a in answers]
    assert best[2] < 0.5
    for le, count in buckets(metrics, "rag_best_score"):
        assert count == sum(b <= le for b in best), le
    assert value(metrics, "rag_best_score_sum") == pytest.approx(sum(best))


def test_errors_and_fallbacks_are_counted(settings: Settings, metrics: Metrics) -> None:
    embeddings = HashingEmbeddings()
    broken = build_fake_assistant(settings, embeddings, answerer=Failing())
    broken.metrics = metrics
    with pytest.raises(AnswererError):
        broken.ask(ON_TOPIC, frontend="web")
    fallback = ExtractiveAnswerer(embeddings, min_score=0.1)
    rescued = build_fake_assistant(settings, embeddings, answerer=Failing(), fallback=fallback)
    rescued.metrics = metrics
    answer = rescued.ask(ON_TOPIC, frontend="web")
    assert answer.mode == "extractive" and not answer.refused

    assert value(metrics, "rag_questions_total", frontend="web", outcome="error") == 1
    assert value(metrics, "rag_questions_total", frontend="web", outcome="fallback") == 1
    assert value(metrics, "rag_questions_total", frontend="web", outcome="answered") == 0


def test_feedback_ingest_and_index_size_are_counted(tmp_path: Path, metrics: Metrics) -> None:
    write_corpus(tmp_path / "corpus")
    s = make_settings(tmp_path)
    report = ingest(s, HashingEmbeddings, metrics=metrics)
    again = ingest(s, HashingEmbeddings, metrics=metrics)
    assert report.chunks_added > 0 and again.chunks_added == 0
    assert value(metrics, "rag_ingest_runs_total", outcome="ok") == 2
    assert value(metrics, "rag_ingest_chunks_total", action="added") == report.chunks_added
    assert value(metrics, "rag_index_chunks") == report.chunks_total
    assert value(metrics, "rag_index_documents") == 3

    for rating in ("up", "up", "down"):
        record_feedback(
            s.feedback_path,
            rating=rating,  # type: ignore[arg-type]
            question="q",
            answer="a",
            citations=[],
            channel="slack",
            metrics=metrics,
        )
    assert value(metrics, "rag_feedback_total", frontend="slack", rating="up") == 2
    assert value(metrics, "rag_feedback_total", frontend="slack", rating="down") == 1


def test_get_metrics_serves_the_prometheus_text(assistant: Assistant, metrics: Metrics) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    app = Starlette(routes=[Route("/metrics", metrics_endpoint(metrics), methods=["GET"])])
    client = TestClient(app)
    before = client.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    assistant.ask(ON_TOPIC, frontend="api")
    after = client.get("/metrics").text
    assert 'rag_questions_total{frontend="api",outcome="answered"} 1.0' in after
    assert 'rag_questions_total{frontend="api",outcome="answered"} 0.0' in before.text


def test_the_metrics_router_serves_on_a_fastapi_app(metrics: Metrics) -> None:
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    app = FastAPI()
    app.include_router(metrics_router(metrics))
    metrics.feedback_given("web", "up")
    client = TestClient(app)
    assert 'rag_feedback_total{frontend="web",rating="up"} 1.0' in client.get("/metrics").text
    assert "/metrics" not in json.dumps(client.get("/openapi.json").json()["paths"])


def test_the_web_server_serves_metrics_beside_the_api(settings: Settings) -> None:
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    from rag.web.api import ApiState
    from rag.web.server import routers

    app = FastAPI()
    for router in routers(ApiState(settings, None)):
        app.include_router(router)
    response = TestClient(app).get("/metrics")
    assert response.status_code == 200 and "rag_questions_total" in response.text


def test_the_slack_http_server_serves_metrics_beside_events() -> None:
    from slack_bolt import App
    from starlette.testclient import TestClient

    from rag.slack.bot import build_http_server

    app = App(token=BOT_TOKEN, signing_secret=SIGNING_SECRET, token_verification_enabled=False)
    server = build_http_server(app, "127.0.0.1", 0)
    response = TestClient(server.config.app).get("/metrics")
    assert response.status_code == 200
    assert "rag_questions_total" in response.text


# --- logs -----------------------------------------------------------------------------------------


@pytest.fixture
def log_lines(settings: Settings) -> Iterator[io.StringIO]:
    """The question and ingest loggers' output, as the JSON formatter writes it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    secret_settings = settings.model_copy(
        update={
            "slack_bot_token": SecretStr(BOT_TOKEN),
            "slack_signing_secret": SecretStr(SIGNING_SECRET),
            "openai_api_key": SecretStr(API_KEY),
        }
    )
    handler.setFormatter(JsonFormatter(Redactor(settings_secrets(secret_settings))))
    loggers = [logging.getLogger(n) for n in ("rag.questions", "rag.ingest", "rag.answering.assistant")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield out
    for logger in loggers:
        logger.removeHandler(handler)


def events(out: io.StringIO, kind: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return [line for line in lines if line.get("event") == kind]


def test_one_json_line_per_question_without_its_text(
    strict: Settings, metrics: Metrics, log_lines: io.StringIO
) -> None:
    assistant = open_assistant(strict, embeddings=HashingEmbeddings(), ensure_index=True, metrics=metrics)
    answer = assistant.ask(ON_TOPIC, frontend="web", request_id="req-42")
    assistant.ask(OFF_TOPIC, frontend="slack")

    (ingest_line,) = events(log_lines, "ingest")
    assert ingest_line["outcome"] == "ok" and ingest_line["chunks_added"] > 0
    first, second = events(log_lines, "question")
    assert first["request_id"] == "req-42"
    assert first["frontend"] == "web" and first["outcome"] == "answered"
    assert first["answerer"] == "extractive"
    assert first["sources"] == list(dict.fromkeys(c.passage.source for c in answer.citations))
    assert first["sources"] and set(first["timings_ms"]) == {
        "condense",
        "retrieve",
        "answer",
        "first_token",
        "total",
    }
    assert second["outcome"] == "refused" and second["request_id"] != first["request_id"]
    text = log_lines.getvalue()
    assert "immense failure" not in text and "banana" not in text
    assert "question" not in first


def test_question_text_only_when_asked_for_and_never_a_secret(
    settings: Settings, metrics: Metrics, log_lines: io.StringIO
) -> None:
    s = settings.model_copy(update={"log_questions": True})
    assistant = open_assistant(s, embeddings=HashingEmbeddings(), ensure_index=True, metrics=metrics)
    assistant.ask(f"{ON_TOPIC} my token is {BOT_TOKEN}", frontend="slack")
    logging.getLogger("rag.answering.assistant").warning(
        "backend said: bad key %s, secret %s, header Bearer abcdefghijklmnop", API_KEY, SIGNING_SECRET
    )
    (line,) = events(log_lines, "question")
    assert line["question"].startswith(ON_TOPIC)
    text = log_lines.getvalue()
    for secret in (BOT_TOKEN, API_KEY, SIGNING_SECRET, "abcdefghijklmnop"):
        assert secret not in text
    assert "**********" in line["question"]


def test_plain_text_on_a_terminal_json_elsewhere(settings: Settings) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert log_format(settings, Terminal()) == "text"
    assert log_format(settings, io.StringIO()) == "json"
    assert log_format(settings.model_copy(update={"log_format": "json"}), Terminal()) == "json"
    assert log_format(settings.model_copy(update={"log_format": "text"}), io.StringIO()) == "text"

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        configure_logging(settings.model_copy(update={"slack_bot_token": SecretStr(BOT_TOKEN)}), stream=out)
        logging.getLogger("rag.test").info("started with %s", BOT_TOKEN)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = json.loads(out.getvalue())
    assert line["message"] == "started with **********" and line["logger"] == "rag.test"


# --- one writer, many readers ---------------------------------------------------------------------


def test_an_ingest_stops_at_another_runs_unfinished_marker(tmp_path: Path, metrics: Metrics) -> None:
    write_corpus(tmp_path / "corpus")
    s = make_settings(tmp_path)
    ingest(s, HashingEmbeddings, metrics=metrics)
    collection = make_client(s).get_collection(s.collection)
    count, manifest = collection.count(), s.manifest_path.read_text()
    state = read_state(collection.metadata)
    assert state.writer is None
    assert state.fingerprint == fingerprint(Manifest.load(s.manifest_path).all_ids())

    mark_writing(collection, Writer("ingest-elsewhere", 4242, "2026-11-28T14:00:00+00:00"))
    (s.corpus_dir / "new.md").write_text("# Zeppelins\n\nThe hangar in Friedrichshafen holds airships.\n")
    for rebuild in (False, True):
        with pytest.raises(
            IngestUnfinishedError, match=r"host ingest-elsewhere.*started 2026-11-28T14:00:00"
        ):
            ingest(s, HashingEmbeddings, rebuild=rebuild, metrics=metrics)
    assert collection.count() == count and s.manifest_path.read_text() == manifest
    assert value(metrics, "rag_ingest_runs_total", outcome="busy") == 2

    report = ingest(s, HashingEmbeddings, force=True, metrics=metrics)
    assert report.files_indexed == 1
    state = read_state(make_client(s).get_collection(s.collection).metadata)
    assert state.writer is None
    assert state.fingerprint == fingerprint(Manifest.load(s.manifest_path).all_ids())
    # The collection's own metadata (the model it was built with) survives the marker's comings and goings.
    assert make_client(s).get_collection(s.collection).metadata["embedding_dim"] == 256


def test_a_marker_left_by_a_dead_process_of_this_machine_is_taken_over(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus")
    s = make_settings(tmp_path)
    ingest(s, HashingEmbeddings)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    collection = make_client(s).get_collection(s.collection)
    mark_writing(collection, Writer(socket.gethostname(), int(gone.stdout), "2026-11-28T14:00:00+00:00"))
    (s.corpus_dir / "new.md").write_text("# Zeppelins\n\nThe hangar in Friedrichshafen holds airships.\n")
    assert ingest(s, HashingEmbeddings).files_indexed == 1
    assert read_state(make_client(s).get_collection(s.collection).metadata).writer is None


def test_a_replica_reloads_bm25_when_the_store_holds_a_newer_index(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus")
    writer = make_settings(tmp_path)
    embeddings = HashingEmbeddings()
    ingest(writer, lambda: embeddings)
    replica = make_settings(tmp_path, ingest_on_start=False)
    index = open_index(replica, embeddings)
    retriever = index.retriever(embeddings, replica)
    assert not index.reload_if_newer(retriever)  # nothing newer yet
    assert not retriever.lexical.knows("zeppelin")

    (writer.corpus_dir / "airships.md").write_text(
        "# Zeppelins\n\nThe zeppelin hangar in Friedrichshafen holds airships.\n"
    )
    ingest(writer, lambda: embeddings)
    collection = make_client(writer).get_collection(writer.collection)
    newer = read_state(collection.metadata).fingerprint
    # While an ingest is writing, the replica keeps what it has.
    mark_writing(collection, Writer("ingest-elsewhere", 1, "2026-11-28T14:00:00+00:00"))
    assert not index.reload_if_newer(retriever)
    mark_done(collection, newer)

    assert index.reload_if_newer(retriever)
    assert retriever.lexical.knows("zeppelin") and retriever.lexical.fingerprint == newer
    assert index.documents == 4
    assert not index.reload_if_newer(retriever)
    ranked = ranked_passages(retriever, "zeppelin hangar Friedrichshafen", 3)
    assert ranked[0].source == "airships.md"


def test_a_replica_assistant_reloads_before_a_question_and_writes_nothing(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus")
    writer = make_settings(tmp_path)
    embeddings = HashingEmbeddings()
    ingest(writer, lambda: embeddings)
    # The replica reads the writer's store: an embedded one here, so through the same data dir.
    replica = make_settings(tmp_path, ingest_on_start=False, index_check_s=0)
    metrics = Metrics(CollectorRegistry())
    assistant = open_assistant(replica, embeddings=embeddings, metrics=metrics)
    assert assistant.status["documents"] == 3
    (writer.corpus_dir / "airships.md").write_text(
        "# Zeppelins\n\nThe zeppelin hangar in Friedrichshafen holds airships.\n"
    )
    ingest(writer, lambda: embeddings)
    bm25 = (writer.bm25_dir / "ids.json").stat().st_mtime_ns
    answer: Answer = assistant.ask("What does the zeppelin hangar in Friedrichshafen hold?")
    assert answer.retrieved[0].source == "airships.md"
    assert assistant.status["documents"] == 4
    assert value(metrics, "rag_index_reloads_total") == 1
    assert value(metrics, "rag_index_documents") == 4
    # The replica rebuilt its BM25 copy in memory: the writer's files are as the ingest left them.
    assert (writer.bm25_dir / "ids.json").stat().st_mtime_ns == bm25
