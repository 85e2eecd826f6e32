"""The HTTP API beside the chat (``rag.web.api``, ``rag.web.server``) through FastAPI's TestClient:
every endpoint, every error status, streaming; and the theme's fonts (issue 16, parts 3 and 4).

Most tests serve the API router alone over one fake assistant (hashing embeddings, the real
chain); a stub assistant stands in where a failure must be provoked. One test builds the whole
server (the chat mounted beside the API).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rag.answering import Answer, AnswererError, Assistant, Delta, IndexProblem, QuestionError
from rag.config import Settings
from rag.ratelimit import RateLimiter
from rag.web.api import MAX_ASK_BODY_BYTES, ApiState, api_router, install_error_handlers
from tests.conftest import make_settings
from tests.fakes import build_fake_assistant, write_corpus

QUESTION = "What policy is an immense failure?"
AUTH = ("ann", "s3cret")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Assistant]:
    tmp = tmp_path_factory.mktemp("api")
    write_corpus(tmp / "corpus")
    settings = make_settings(tmp, auth=[":".join(AUTH)], max_question_chars=200)
    return settings, build_fake_assistant(settings)


def api_client(state: ApiState) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(api_router(state))
    return TestClient(app)


@pytest.fixture
def client(served: tuple[Settings, Assistant]) -> Iterator[TestClient]:
    settings, assistant = served
    with api_client(ApiState(settings, assistant)) as client:
        yield client


def without_timings(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "timings_ms"}


def events(body: str) -> list[tuple[str, Any]]:
    """The (event, parsed data) pairs of a text/event-stream body."""
    out = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


class StubAssistant:
    """Yields ``script`` (events, or an exception to raise) and records what it was asked."""

    def __init__(self, *script: Any) -> None:
        self.script = script
        self.status = {"documents": 1, "chunks": 2, "answerer": "stub"}
        self.asked: list[tuple[str, list[Any], str]] = []

    def stream(self, question: str, history: Any = None, *, frontend: str = "api", **_: Any) -> Iterator[Any]:
        self.asked.append((question, list(history or []), frontend))
        for item in self.script:
            if isinstance(item, Exception):
                raise item
            yield item


def stub_answer(text: str = "Stubbed. [1]") -> Answer:
    return Answer(question="q", answer=text, refused=False, citations=[], retrieved=[], mode="stub")


def stub_client(settings: Settings, assistant: Any, **state: Any) -> TestClient:
    return api_client(ApiState(settings, assistant, **state))


# -- POST /api/ask ---------------------------------------------------------------------------------


def test_ask_returns_the_json_of_rag_ask_json(client: TestClient, served: tuple[Settings, Assistant]) -> None:
    response = client.post("/api/ask", json={"question": QUESTION}, auth=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    expected = served[1].ask(QUESTION)
    # Byte for byte what `rag ask --json` prints, but for the timings of this other run.
    assert without_timings(response.json()) == without_timings(json.loads(expected.to_json()))
    assert response.text.startswith('{\n  "question": ')  # to_json's layout, as the CLI prints it
    assert "immense failure" in response.json()["answer"]
    assert response.json()["citations"][0]["source"] == "article.md"


def test_ask_passes_the_history_and_labels_the_front_end(served: tuple[Settings, Assistant]) -> None:
    stub = StubAssistant(Delta("Stub"), stub_answer())
    history = [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Her."}]
    with stub_client(served[0], stub) as client:
        response = client.post("/api/ask", json={"question": "  And then?  ", "history": history}, auth=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["answer"] == "Stubbed. [1]"
    assert stub.asked == [("And then?", history, "api")]


def test_ask_streams_server_sent_events_ending_with_the_json(
    client: TestClient, served: tuple[Settings, Assistant]
) -> None:
    response = client.post(
        "/api/ask", json={"question": QUESTION}, auth=AUTH, headers={"Accept": "text/event-stream"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    stream = events(response.text)
    kinds = [kind for kind, _ in stream]
    assert kinds[-1] == "answer" and set(kinds[:-1]) == {"delta"} and len(kinds) >= 2
    final = stream[-1][1]
    assert "".join(data["text"] for _, data in stream[:-1]) == final["answer"]
    assert without_timings(final) == without_timings(served[1].ask(QUESTION).to_dict())


def test_streamed_pieces_holding_newlines_stay_whole(served: tuple[Settings, Assistant]) -> None:
    stub = StubAssistant(Delta("one\n\ntwo"), Delta(" three"), stub_answer("one\n\ntwo three"))
    with stub_client(served[0], stub) as client:
        response = client.post(
            "/api/ask", json={"question": "q?"}, auth=AUTH, headers={"Accept": "text/event-stream"}
        )
    assert events(response.text) == [
        ("delta", {"text": "one\n\ntwo"}),
        ("delta", {"text": " three"}),
        ("answer", stub_answer("one\n\ntwo three").to_dict()),
    ]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"question": ""}, "Please type a question"),
        ({"question": "   "}, "Please type a question"),
        ({"question": "why " * 60}, "the limit is 200"),
        ({"history": []}, "question: Field required"),
        ({"question": 42}, "question: Input should be a valid string"),
        ({"question": "q?", "history": "nope"}, "history"),
    ],
)
def test_bad_questions_get_400_with_the_reason(
    client: TestClient, body: dict[str, Any], fragment: str
) -> None:
    response = client.post("/api/ask", json=body, auth=AUTH)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert response.json()["status"] == 400


def test_a_body_that_is_not_json_gets_400(client: TestClient) -> None:
    response = client.post(
        "/api/ask", content=b"{question: 1", headers={"Content-Type": "application/json"}, auth=AUTH
    )
    assert response.status_code == 400
    assert '{"question": "...", "history": []}' in response.json()["error"]


def test_a_body_of_another_type_gets_415(client: TestClient) -> None:
    response = client.post("/api/ask", data={"question": QUESTION}, auth=AUTH)  # a form
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]
    assert client.post("/api/ask", content=QUESTION, auth=AUTH).status_code == 415  # no type at all


def test_a_body_over_the_limit_gets_413(client: TestClient) -> None:
    history = [{"role": "user", "content": "x" * 1000}] * (MAX_ASK_BODY_BYTES // 1000 + 1)
    response = client.post("/api/ask", json={"question": QUESTION, "history": history}, auth=AUTH)
    assert response.status_code == 413
    assert "shorten the history" in response.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"question": "q", "history": ["'
        for _ in range(MAX_ASK_BODY_BYTES // 10_000 + 1):
            yield b"x" * 10_000
        yield b'"]}'

    chunked = client.post(
        "/api/ask", content=chunks(), headers={"Content-Type": "application/json"}, auth=AUTH
    )
    assert chunked.status_code == 413


@pytest.mark.parametrize(
    "auth", [None, ("ann", "wrong"), ("bob", "s3cret"), ("", ""), ("ann", "s3cret\0")], ids=str
)
def test_without_a_valid_user_the_api_answers_401(client: TestClient, auth: tuple[str, str] | None) -> None:
    response = client.post("/api/ask", json={"question": QUESTION}, auth=auth)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert "user" in response.json()["error"]


def test_a_malformed_authorization_header_gets_401(client: TestClient) -> None:
    for header in ("Bearer abc", "Basic", "Basic !!!not-base64"):
        response = client.post("/api/ask", json={"question": QUESTION}, headers={"Authorization": header})
        assert response.status_code == 401, header


def test_without_users_configured_no_sign_in_is_needed(tmp_path: Path) -> None:
    open_settings = make_settings(tmp_path)
    with stub_client(open_settings, StubAssistant(stub_answer())) as client:
        assert client.post("/api/ask", json={"question": "q?"}).status_code == 200


def test_the_rate_limit_answers_429_with_retry_after(served: tuple[Settings, Assistant]) -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=2, clock=lambda: now[0])
    stub = StubAssistant(stub_answer())
    with stub_client(served[0], stub, limiter=limiter) as client:
        ok = [client.post("/api/ask", json={"question": "q?"}, auth=AUTH).status_code for _ in range(2)]
        now[0] = 15.0
        refused = client.post("/api/ask", json={"question": "q?"}, auth=AUTH)
        assert client.post("/api/ask", json={"question": ""}, auth=AUTH).status_code == 400
    assert ok == [200, 200]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "45"
    assert "45 s" in refused.json()["error"] and "RAG_RATE_LIMIT_PER_MINUTE" in refused.json()["error"]
    assert len(stub.asked) == 2
    # Counted against the signed-in user, as in the chat (another user still may ask).
    assert limiter.allow("user:bob") and not limiter.allow("user:ann")


def test_without_an_index_questions_get_503(served: tuple[Settings, Assistant]) -> None:
    problem = "No index in /data: run `rag ingest`"
    with stub_client(served[0], None, problem=problem) as client:
        response = client.post("/api/ask", json={"question": QUESTION}, auth=AUTH)
    assert response.status_code == 503
    assert response.json() == {"error": problem, "status": 503}


@pytest.mark.parametrize(
    ("failure", "status", "fragment"),
    [
        (AnswererError("the model server refused the connection"), 503, "answer backend is not available"),
        (IndexProblem("the Chroma server at db:8000 is down"), 503, "document index is not available"),
        (QuestionError("That is not a question."), 400, "That is not a question."),
    ],
)
def test_backend_failures_get_their_status(
    served: tuple[Settings, Assistant], failure: Exception, status: int, fragment: str
) -> None:
    with stub_client(served[0], StubAssistant(failure)) as client:
        response = client.post("/api/ask", json={"question": "q?"}, auth=AUTH)
        streamed = client.post(
            "/api/ask", json={"question": "q?"}, auth=AUTH, headers={"Accept": "text/event-stream"}
        )
    assert response.status_code == status
    assert fragment in response.json()["error"] and str(failure) in response.json()["error"]
    # Once streaming has begun the status is sent: the failure is the stream's last event.
    assert streamed.status_code == 200
    kind, data = events(streamed.text)[-1]
    assert kind == "error" and data["status"] == status and fragment in data["error"]


def test_an_unexpected_failure_mid_stream_ends_with_an_error_event(
    served: tuple[Settings, Assistant], caplog: pytest.LogCaptureFixture
) -> None:
    stub = StubAssistant(Delta("Half an ans"), RuntimeError("boom"))
    with stub_client(served[0], stub) as client:
        response = client.post(
            "/api/ask",
            json={"question": "secret question?"},
            auth=AUTH,
            headers={"Accept": "text/event-stream"},
        )
    assert [kind for kind, _ in events(response.text)] == ["delta", "error"]
    assert events(response.text)[-1][1] == {
        "error": "Something went wrong while answering; the error was logged.",
        "status": 500,
    }
    assert "boom" in caplog.text and "secret question" not in caplog.text


# -- /healthz and /readyz -----------------------------------------------------------------------------


def test_healthz_and_readyz_when_ready(client: TestClient, served: tuple[Settings, Assistant]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")  # no sign-in: probes have no users
    assert ready.status_code == 200
    status = served[1].status
    assert ready.json() == {
        "status": "ready",
        "documents": status["documents"],
        "chunks": status["chunks"],
        "answerer": "extractive",
    }


def test_readyz_says_why_it_is_not_ready(served: tuple[Settings, Assistant]) -> None:
    with stub_client(served[0], None, problem="Chroma at db:8000 refused the connection") as client:
        assert client.get("/healthz").status_code == 200  # the process answers all the same
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "Chroma at db:8000 refused the connection"
    broken = StubAssistant()
    broken.status = {"documents": 1, "chunks": 2, "answerer": ""}
    with stub_client(served[0], broken) as client:
        assert client.get("/readyz").json() == {"error": "The answerer is not ready.", "status": 503}


# -- the whole server -------------------------------------------------------------------------------


def test_the_server_holds_the_api_the_docs_and_the_chat(served: tuple[Settings, Assistant]) -> None:
    from rag.web.server import build_server

    settings, assistant = served
    with TestClient(build_server(settings, assistant)) as client:
        assert client.post("/api/ask", json={"question": QUESTION}, auth=AUTH).json()["citations"]
        assert client.get("/readyz").status_code == 200
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        # Offline: Swagger UI's files come from this server, not a CDN.
        assert "cdn.jsdelivr.net" not in docs.text and "unpkg.com" not in docs.text
        script = docs.text.split('<script src="')[1].split('"')[0]
        assert script.startswith("/") and client.get(script).status_code == 200
        spec = client.get("/openapi.json").json()
        assert {"/api/ask", "/healthz", "/readyz"} <= set(spec["paths"])
        ask = spec["paths"]["/api/ask"]["post"]
        assert "question" in ask["requestBody"]["content"]["application/json"]["schema"]["properties"]
        assert {"400", "401", "413", "415", "429", "503"} <= set(ask["responses"])
        # The chat is mounted beside the API and keeps its sign-in.
        assert client.get("/config").status_code == 401
        assert "gradio" in client.get("/").text.lower()


def test_the_chat_and_the_api_share_one_rate_limit(served: tuple[Settings, Assistant]) -> None:
    from rag.web.app import WebChat
    from rag.web.server import build_server

    settings, assistant = served
    limiter = RateLimiter(per_minute=1)
    with TestClient(build_server(settings, assistant, limiter=limiter)) as client:
        chat = WebChat(assistant, settings, limiter=limiter)
        assert chat.ask_api(QUESTION, [], user="user:ann")["answer"]
        assert client.post("/api/ask", json={"question": QUESTION}, auth=AUTH).status_code == 429


# -- part 4: the fonts ------------------------------------------------------------------------------


def test_the_theme_serves_only_font_faces_that_hold_every_glyph() -> None:
    """Gradio 6.31 ships 600-weight files of 55-75 glyphs; bold text took "A" from one and the
    rest from a fallback font. Every face the theme declares must hold the page's letters."""
    import re
    import string

    from fontTools.ttLib import TTFont
    from gradio.themes.utils.fonts import STATIC_FONTS_DIR

    from rag.web.theme import chat_theme

    css = "\n".join(chat_theme()._font_css)
    files = re.findall(r"url\('static/fonts/([^']+)'\)", css)
    assert len(files) == 4, css  # sans and mono, regular and bold
    page_text = "Ask the documents Answer 1: “Sources” · … [] 0123456789 " + string.ascii_letters
    for name in files:
        cmap = TTFont(STATIC_FONTS_DIR / name).getBestCmap()
        missing = {c for c in page_text if ord(c) not in cmap}
        assert not missing, f"{name} lacks {''.join(sorted(missing))}"
