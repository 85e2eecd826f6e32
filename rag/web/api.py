"""The plain HTTP API beside the chat (mounted with it by ``rag.web.server``)::

    curl -s localhost:7860/api/ask -H 'Content-Type: application/json' \\
         -d '{"question": "What does the Nuclear Suppliers Group do?"}'

``POST /api/ask`` answers with the JSON of ``rag ask --json`` (``Answer.to_json``); with
``Accept: text/event-stream`` it streams ``delta`` events (``{"text": ...}``) and ends with an
``answer`` event holding that JSON (or an ``error`` event). ``GET /healthz`` says the process
answers, ``GET /readyz`` whether the index is open and the answerer ready (503 and the reason
otherwise).

When ``RAG_AUTH`` lists users, ``/api/*`` wants one of them by HTTP Basic auth (401 otherwise);
``/healthz`` and ``/readyz`` stay open for probes. Questions count against the chat's rate limit
for the same user. Every error is ``{"error": <what to do>, "status": <code>}`` with its status.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from rag.answering import (
    Answer,
    AnswererError,
    Assistant,
    Delta,
    DocumentLibrary,
    IndexProblem,
    QuestionError,
    check_question,
)
from rag.config import Settings
from rag.ratelimit import RateLimiter

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI, Request
    from starlette.responses import Response

log = logging.getLogger(__name__)

# A question is at most RAG_MAX_QUESTION_CHARS; the rest of a body is the history. A request
# larger than this is refused (413) before it is read into memory.
MAX_ASK_BODY_BYTES = 1_000_000


class ApiError(Exception):
    """An error the API answers with: its status, a message a person can act on, and headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class AskRequest(BaseModel):
    """The body of ``POST /api/ask``."""

    question: str = Field(description="The question, at most RAG_MAX_QUESTION_CHARS characters.")
    history: list[dict[str, Any]] = Field(
        default_factory=list,
        description='Earlier messages: [{"role": "user" | "assistant", "content": "..."}], oldest first.',
    )


@dataclass
class ApiState:
    """What the HTTP routers share: the settings, the assistant (None, with ``problem``, when the
    index could not be opened), the chat's rate limiter, the documents service, and a cap on
    concurrent answers."""

    settings: Settings
    assistant: Assistant | None
    problem: str | None = None
    limiter: RateLimiter | None = None
    # The documents service of /api/documents (rag.web.documents_api); None: those answer 503.
    library: DocumentLibrary | None = None
    answering: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = RateLimiter(self.settings.rate_limit_per_minute, frontend="api")
        # The chat's queue runs RAG_CONCURRENCY answers at once; the API gets the same cap.
        self.answering = threading.BoundedSemaphore(self.settings.concurrency)

    @property
    def user(self) -> Callable[..., str | None]:
        """A FastAPI dependency: the signed-in user (HTTP Basic, ``RAG_AUTH``), None when no
        users are configured; ``ApiError(401)`` when users are configured and none signed in."""
        return user_dependency(self.settings)

    def not_ready(self) -> str | None:
        """Why questions cannot be answered now (None when they can)."""
        if self.assistant is None:
            return self.problem or "The index is not open: run `rag ingest`, then restart the server."
        if not self.assistant.status.get("answerer"):
            return "The answerer is not ready."
        return None


def user_dependency(settings: Settings) -> Callable[..., str | None]:
    """The dependency behind ``ApiState.user`` (compares passwords in constant time)."""
    from fastapi import Request

    users = dict(pair.split(":", 1) for pair in settings.auth)
    challenge = {"WWW-Authenticate": 'Basic realm="rag", charset="UTF-8"'}

    def signed_in(request: Request) -> str | None:
        if not users:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise ApiError(
                401,
                "Sign in: send one of RAG_AUTH's users with HTTP Basic auth (curl -u user:password).",
                challenge,
            )
        try:
            name, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(
                401, "The Authorization header is not valid HTTP Basic credentials.", challenge
            ) from None
        expected = users.get(name)
        # Compared even for unknown names, so the time taken does not say which names exist.
        ok = secrets.compare_digest(password.encode(), (expected or "\0" + password).encode())
        if expected is None or not ok:
            raise ApiError(401, "Wrong user name or password.", challenge)
        return name

    signed_in.__annotations__["request"] = Request
    return signed_in


def client_key(user: str | None, request: Request) -> str:
    """Whom a request counts against for the rate limit (as in the chat: the user, else the host)."""
    if user:
        return f"user:{user}"
    host = request.client.host if request.client else ""
    return f"host:{host}" if host else "anonymous"


# -- the router ---------------------------------------------------------------------------------


def api_router(state: ApiState) -> APIRouter:
    """``/api/ask``, ``/healthz`` and ``/readyz`` over ``state``."""
    from fastapi import APIRouter, Depends, Request
    from fastapi.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response, StreamingResponse

    signed_in = state.user

    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def readyz() -> Response:
        reason = state.not_ready()
        if reason is not None:
            raise ApiError(503, reason)
        assert state.assistant is not None
        status = state.assistant.status
        return JSONResponse(
            {
                "status": "ready",
                "documents": status.get("documents"),
                "chunks": status.get("chunks"),
                "answerer": status.get("answerer"),
            }
        )

    async def ask(request: Request, user: str | None = Depends(signed_in)) -> Response:
        body = await read_ask_body(request)
        question, history = admit(state, body, client_key(user, request))
        if "text/event-stream" in request.headers.get("accept", ""):
            return StreamingResponse(
                sse_events(state, question, history),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        answer = await run_in_threadpool(answer_question, state, question, history)
        return Response(answer.to_json(), media_type="application/json")

    # FastAPI reads parameters from type hints; under postponed annotations those are strings
    # naming what is imported in this function only, so hand it the real types.
    readyz.__annotations__["return"] = Response
    ask.__annotations__.update(request=Request, user=str | None, **{"return": Response})

    ask_schema = AskRequest.model_json_schema()
    ask_schema.pop("title", None)
    router = APIRouter()
    router.add_api_route(
        "/healthz", healthz, methods=["GET"], tags=["operations"], summary="The process answers"
    )
    router.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=None,
        tags=["operations"],
        summary="The index is open and the answerer ready",
        responses={503: {"description": "Not ready; `error` says why and what to do."}},
    )
    router.add_api_route(
        "/api/ask",
        ask,
        methods=["POST"],
        response_model=None,
        tags=["questions"],
        summary="Answer a question from the documents, with citations",
        description=(
            "Returns the JSON of `rag ask --json`: `answer` (with `[n]` citation markers), "
            "`citations` (source, title, quote, ...), `sentences`, `mode`, `standalone_question`, "
            "`retrieved`. With `Accept: text/event-stream` the answer streams as server-sent "
            'events: `delta` events (`{"text": ...}`), then one `answer` event with that JSON '
            "(or an `error` event)."
        ),
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": ask_schema}}}
        },
        responses={
            200: {
                "description": "The answer (JSON), or its stream (text/event-stream).",
                "content": {"application/json": {}, "text/event-stream": {}},
            },
            400: {"description": "Empty or too long question, or a malformed body."},
            401: {"description": "RAG_AUTH is set and no valid HTTP Basic credentials were sent."},
            413: {"description": "The body is larger than 1 MB."},
            415: {"description": "The body is not JSON."},
            429: {"description": "Rate limit (RAG_RATE_LIMIT_PER_MINUTE); see Retry-After."},
            503: {"description": "The index or the answer backend is not available."},
        },
    )
    return router


async def read_ask_body(request: Request) -> AskRequest:
    """The request's ``AskRequest``, or ``ApiError`` 413/415/400 saying what is wrong with it."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(
            415,
            f"Send the question as JSON (Content-Type: application/json), not {content_type or 'no type'}:"
            ' {"question": "...", "history": []}.',
        )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_ASK_BODY_BYTES:
        raise ApiError(413, f"The request body is over {MAX_ASK_BODY_BYTES:,} bytes; shorten the history.")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_ASK_BODY_BYTES:
            raise ApiError(
                413, f"The request body is over {MAX_ASK_BODY_BYTES:,} bytes; shorten the history."
            )
    try:
        return AskRequest.model_validate(json.loads(raw))
    except ValueError as exc:  # JSONDecodeError and ValidationError are both ValueErrors
        raise ApiError(
            400, f'The body must be JSON like {{"question": "...", "history": []}}: {describe(exc)}'
        ) from None


def describe(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()
        )
    return str(exc)


def admit(state: ApiState, body: AskRequest, key: str) -> tuple[str, list[dict[str, Any]]]:
    """The cleaned question and history, or ``ApiError`` 503/400/429 (checked in that order, so
    a refused question does not use up the user's allowance)."""
    reason = state.not_ready()
    if reason is not None:
        raise ApiError(503, reason)
    try:
        question = check_question(body.question, state.settings.max_question_chars)
    except QuestionError as exc:
        raise ApiError(400, str(exc)) from None
    limiter = state.limiter
    assert limiter is not None and state.assistant is not None
    # The limiter counts the refusal in the metrics (under the front end it was made for).
    if not limiter.allow(key):
        wait = max(1, round(limiter.retry_after(key)))
        raise ApiError(
            429,
            f"{limiter.per_minute} questions a minute is the limit (RAG_RATE_LIMIT_PER_MINUTE);"
            f" ask again in {wait} s.",
            {"Retry-After": str(wait)},
        )
    return question, body.history


def answer_question(state: ApiState, question: str, history: list[dict[str, Any]]) -> Answer:
    """The whole answer, or ``ApiError`` (400 for a question the chain refuses, 503 when the
    answer backend or the index is down)."""
    events = stream_answer(state, question, history)
    for event in events:
        if isinstance(event, Answer):
            return event
    raise ApiError(500, "No answer was produced. Please try again.")  # pragma: no cover - chain invariant


def stream_answer(state: ApiState, question: str, history: list[dict[str, Any]]) -> Iterator[Delta | Answer]:
    """The assistant's events for the question, its failures turned into ``ApiError``."""
    assert state.assistant is not None
    with state.answering:
        try:
            yield from state.assistant.stream(question, history, frontend="api")
        except QuestionError as exc:
            raise ApiError(400, str(exc)) from None
        except AnswererError as exc:
            raise ApiError(503, f"The answer backend is not available: {exc}") from None
        except IndexProblem as exc:
            raise ApiError(503, f"The document index is not available: {exc}") from None


def sse_events(state: ApiState, question: str, history: list[dict[str, Any]]) -> Iterator[str]:
    """Server-sent events: ``delta`` per piece, then ``answer`` (or ``error``); each event's data
    is one line of JSON, so a piece holding a newline cannot end an event early."""
    try:
        for event in stream_answer(state, question, history):
            if isinstance(event, Delta):
                yield sse("delta", json.dumps({"text": event.text}, ensure_ascii=False))
            else:
                yield sse("answer", event.to_json(indent=None))
                return
        yield sse("error", json.dumps({"error": "No answer was produced. Please try again.", "status": 500}))
    except ApiError as exc:
        yield sse("error", json.dumps({"error": exc.message, "status": exc.status}, ensure_ascii=False))
    except Exception:
        # The question's text stays out of the logs (RAG_LOG_QUESTIONS governs that).
        log.exception("answering a question over the HTTP API failed")
        yield sse(
            "error",
            json.dumps(
                {"error": "Something went wrong while answering; the error was logged.", "status": 500}
            ),
        )


def sse(event: str, data: str) -> str:
    """One server-sent event.

    >>> sse("delta", '{"text": "Hi"}')
    'event: delta\\ndata: {"text": "Hi"}\\n\\n'
    """
    return f"event: {event}\ndata: {data}\n\n"


# -- errors -------------------------------------------------------------------------------------


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error of the app's own routes as ``{"error", "status"}`` (the mounted chat keeps
    Gradio's): ``ApiError``, FastAPI's validation errors (400, not 422) and HTTP errors."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.headers)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', ())) or 'request'}: {error.get('msg')}"
            for error in exc.errors()
        )
        return error_response(400, f"The request is not valid: {details}")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
