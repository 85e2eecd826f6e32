"""The one HTTP server of the web front end: a FastAPI app holding the plain HTTP API (``api``)
with the Gradio chat (``app``) mounted at ``/``, served on ``RAG_HOST:RAG_PORT``::

    server = build_server(settings, assistant)
    handle = serve(server, settings, block=False)   # uvicorn in a thread; handle.close() stops it

Every HTTP router beside the chat is listed in ``routers`` (the one place to add another); they
are included before the chat is mounted, because the mount at ``/`` answers every path that no
route before it took. ``/docs`` (OpenAPI, served from local files) documents them all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rag.config import Settings
from rag.observability import configure_logging, metrics_router
from rag.ratelimit import RateLimiter
from rag.web.api import ApiState, api_router, install_error_handlers
from rag.web.app import assistant_or_problem, build_ui, launch_options, open_documents
from rag.web.documents_api import documents_router
from rag.web.theme import chat_theme

if TYPE_CHECKING:
    import gradio as gr
    from fastapi import APIRouter, FastAPI

    from rag.answering import Assistant, DocumentLibrary

log = logging.getLogger(__name__)


def routers(state: ApiState) -> list[APIRouter]:
    """Every HTTP router served beside the chat, in the order they are matched.

    Add a new one here (``/api/documents``, ``/metrics``, ...); each may take what it needs from
    ``state`` (settings, assistant, the shared rate limiter, the signed-in user dependency
    ``state.user``).
    """
    # GET /metrics: Prometheus, not in /docs
    return [api_router(state), documents_router(state), metrics_router()]


def build_server(
    settings: Settings,
    assistant: Assistant | None,
    *,
    problem: str | None = None,
    limiter: RateLimiter | None = None,
    demo: gr.Blocks | None = None,
    extra_routers: Sequence[APIRouter] = (),
    library: DocumentLibrary | None = None,
) -> FastAPI:
    """The FastAPI app: the HTTP API and the chat (``build_ui``) on one server.

    ``assistant`` is None when the index could not be opened (``problem`` says why): the chat
    shows that, ``/readyz`` answers 503 with it. The chat and the API count questions against one
    ``limiter`` (a user asking both ways gets one allowance). ``demo`` replaces the chat's UI
    (tests), ``extra_routers`` are included after ``routers(state)``. ``library`` is the
    documents service of the documents view and ``/api/documents`` (None: they say the index is
    not open).
    """
    from fastapi_offline import FastAPIOffline

    if limiter is None:  # not ``limiter or ...``: an unused limiter has len() 0, so is falsy
        limiter = RateLimiter(settings.rate_limit_per_minute, frontend="web")
    state = ApiState(
        settings=settings, assistant=assistant, problem=problem, limiter=limiter, library=library
    )
    # FastAPI's own /docs page loads Swagger UI from a CDN; fastapi-offline's serves the same
    # page from files in its package, so /docs works with no internet.
    app = FastAPIOffline(
        docs_url="/docs",
        redoc_url=None,
        title="Ask the documents: HTTP API",
        summary="Questions answered from the indexed documents, every answer citing its passages.",
        version="1",
    )
    install_error_handlers(app)
    for router in (*routers(state), *extra_routers):
        app.include_router(router)
    if demo is None:
        demo = build_ui(assistant, settings, problem=problem, limiter=limiter, library=library)
    return mount_chat(app, demo, settings)


def mount_chat(app: FastAPI, demo: gr.Blocks, settings: Settings) -> FastAPI:
    """Mount the Gradio chat at ``/`` of ``app`` with what ``Blocks.launch`` would apply: the
    sign-in (``RAG_AUTH``), address, theme, CSS and script, and the queue's concurrency."""
    import gradio as gr

    options = launch_options(settings)
    demo.queue(default_concurrency_limit=settings.concurrency)
    return gr.mount_gradio_app(
        app,
        demo,
        path="/",
        server_name=options["server_name"],
        server_port=options["server_port"],
        footer_links=options["footer_links"],
        auth=options["auth"],
        auth_message=options["auth_message"],
        theme=chat_theme(),
        css=options["css"],
        js=options["js"],
        # launch()'s defaults where mount_gradio_app's differ: unexpected errors are not shown
        # to users (gr.Error messages still are), no server-side rendering (no Node).
        show_error=False,
        ssr_mode=False,
    )


class Served:
    """A running server (``serve(..., block=False)``): its URL, and ``close()`` to stop it."""

    def __init__(self, server: Any, url: str) -> None:
        self.server = server
        self.url = url

    def close(self) -> None:
        self.server.close()


def serve(app: FastAPI, settings: Settings, *, block: bool = True, demo: gr.Blocks | None = None) -> Served:
    """Serve ``app`` on ``settings.host:settings.port`` (127.0.0.1:7860 by default).

    Gradio's own server runner is used (uvicorn in a thread, the port checked first), as
    ``Blocks.launch`` does; ``demo``, when given, is told about the server so that its
    ``close()`` stops it as after ``launch``. With ``block`` this returns when interrupted.
    """
    from gradio import http_server

    _, port, url, server = http_server.start_server(
        app=app,  # type: ignore[arg-type]  # any ASGI app; Gradio's annotation names its own
        server_name=settings.host,
        server_port=settings.port,
    )
    if demo is not None:
        demo.server = server
        demo.local_url = url  # type: ignore[assignment]
        demo.server_port = port
    log.warning("serving the chat on %s (HTTP API: %sapi/ask, docs: %sdocs)", url, url, url)
    served = Served(server, url)
    if block:
        try:
            server.thread.join()
        except KeyboardInterrupt:
            served.close()
    return served


def serve_chat(demo: gr.Blocks, settings: Settings, *, block: bool = True) -> Any:
    """Serve ``demo`` alone (no HTTP API) on ``settings.host:settings.port``, mounted and run as
    ``launch`` does (``rag.web.server``); ``demo.close()`` stops it."""
    from fastapi import FastAPI

    return serve(
        mount_chat(FastAPI(docs_url=None, redoc_url=None), demo, settings), settings, block=block, demo=demo
    )


def launch(settings: Settings) -> None:
    """Open (or build) the index, then serve the chat and the HTTP API: ``python app.py``,
    ``rag serve``. (Here, not in ``rag.web.app``: this module imports that one.)"""
    from rag.answering import build_embeddings

    configure_logging(settings)
    # One embedding model for the answers and the uploads.
    embeddings = build_embeddings(settings)
    assistant, problem = assistant_or_problem(settings, embeddings=embeddings)
    if problem:
        log.error("%s", problem)
    library = open_documents(settings, assistant, embeddings)
    serve(build_server(settings, assistant, problem=problem, library=library), settings)
