"""The web chat: a Gradio UI over the answering API (``Assistant``).

``WebChat`` holds the callbacks as plain methods (unit-tested without a server); ``build_ui``
wires them into ``gr.Blocks``; ``rag.web.server.launch`` opens (or builds) the index and serves
the chat with the HTTP API beside it (``rag.web.server``, ``rag.web.api``)::

    chat = WebChat(assistant, settings)
    views = list(chat.respond("What policy does the author call an immense failure?", []))
    views[-1].turns[0]["answer"]["citations"][0]["quote"]

The conversation lives in a list of turns (``{"question", "answer": Answer.to_dict() | None,
"error", "draft"}``) kept in ``gr.State``; the chat messages and the sources panel are rendered
from it, so nothing is parsed back out of rendered Markdown.

Programmatic use (``gradio_client``): the endpoint ``/ask`` takes ``question`` and an optional
``history`` (``[{"role": "user" | "assistant", "content": ...}]``) and returns the JSON of
``rag ask --json``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rag.answering import (
    Answer,
    AnswererError,
    Assistant,
    Delta,
    DocumentLibrary,
    IndexProblem,
    QuestionError,
    check_question,
    open_assistant,
    open_library,
)
from rag.config import Settings
from rag.feedback import record_feedback
from rag.ratelimit import RateLimiter
from rag.web.documents import DOCUMENTS_CSS, DOCUMENTS_JS
from rag.web.render import answer_markdown, escape_markdown, sources_html, status_line

if TYPE_CHECKING:
    import gradio as gr
    from langchain_core.embeddings import Embeddings

log = logging.getLogger(__name__)

# Questions from the bundled corpus's topics, shown on the empty chat.
EXAMPLES = (
    "What policy does the author call an immense failure?",
    "How long is North Korea's coastline?",
    "What does the Nuclear Suppliers Group do?",
    "How big a share of North Korea's trade does China account for?",
)

TITLE = "Ask the documents"

CSS = """
#status { font-size: 0.85em; opacity: 0.75; }
#notice:empty { display: none; }
#notice p { margin: 0; padding: 6px 10px; border-radius: 6px; background: var(--background-fill-secondary);
  border-left: 3px solid var(--color-accent); }
#sources { max-height: 78vh; overflow-y: auto; }
#sources details.src-group > summary { font-weight: 600; cursor: pointer; margin: 6px 0; }
#sources details.src { border: 1px solid var(--border-color-primary); border-radius: 8px; margin: 6px 0;
  padding: 6px 10px; }
#sources details.src > summary { cursor: pointer; }
#sources .src-n { font-weight: 600; color: var(--color-accent); }
#sources .src-section { opacity: 0.8; }
#sources .src-meta { font-size: 0.8em; opacity: 0.8; margin: 6px 0; word-break: break-all; }
#sources .src-text { white-space: pre-wrap; font-size: 0.92em; line-height: 1.5; }
#sources .src-text mark { background: #fde68a; color: #1f2937; padding: 0 2px; border-radius: 3px; }
#sources details.src.flash { animation: src-flash 1.5s ease-out; }
@keyframes src-flash { from { background: var(--color-accent-soft); } to { background: transparent; } }
"""

# Clicking an answer's [n] opens that passage in the sources panel (capture phase, so the
# chat's own link handling does not open a new tab).
JS = """
() => {
  document.addEventListener('click', (event) => {
    const link = event.target.closest && event.target.closest('a[href^="#src-"]');
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const item = document.getElementById(link.getAttribute('href').slice(1));
    if (!item) return;
    const group = item.parentElement && item.parentElement.closest('details');
    if (group) group.open = true;
    item.open = true;
    item.scrollIntoView({behavior: 'smooth', block: 'nearest'});
    item.classList.remove('flash');
    void item.offsetWidth;
    item.classList.add('flash');
  }, true);
}
"""


class ChatError(Exception):
    """A problem to show the user as a message (rate limit, unusable index, bad input)."""


@dataclass
class View:
    """What one callback step shows: the question box, chat, turns, sources panel, notice."""

    box: str
    busy: bool
    messages: list[dict[str, str]]
    turns: list[dict[str, Any]]
    sources: str
    notice: str = ""


@dataclass
class WebChat:
    """The chat's callbacks, as plain functions of their inputs.

    ``assistant`` is None when the index could not be opened; ``problem`` then says why and
    every question gets that message.
    """

    assistant: Assistant | None
    settings: Settings
    problem: str | None = None
    limiter: RateLimiter | None = None
    feedback_path: Path | None = None
    examples: Sequence[str] = EXAMPLES

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = RateLimiter(self.settings.rate_limit_per_minute, frontend="web")
        if self.feedback_path is None:
            self.feedback_path = self.settings.feedback_path

    def status(self) -> str:
        if self.assistant is None:
            return f"Not ready: {escape_markdown(self.problem or 'no index')}"
        return status_line(self.assistant.status)

    # -- asking ---------------------------------------------------------------------------

    def _admit(self, question: str, user: str) -> str:
        """The cleaned question, or ``ChatError``/``QuestionError`` with the reason it is refused."""
        if self.assistant is None:
            raise ChatError(self.problem or "The index is not available: run `rag ingest`.")
        cleaned = check_question(question, self.settings.max_question_chars)
        assert self.limiter is not None
        if not self.limiter.allow(user):
            wait = max(1, round(self.limiter.retry_after(user)))
            raise ChatError(
                f"You have asked {self.limiter.per_minute} questions in the last minute, the limit;"
                f" please wait about {wait} s."
            )
        return cleaned

    def respond(
        self, question: str, turns: Sequence[dict[str, Any]], user: str = "anonymous"
    ) -> Iterator[View]:
        """Answer ``question`` after ``turns``, yielding a view as each piece streams in."""
        turns = [dict(t) for t in turns]
        try:
            cleaned = self._admit(question, user)
        except (ChatError, QuestionError) as exc:
            yield self._view(turns, notice=escape_markdown(str(exc)), box=question)
            return
        assert self.assistant is not None
        turn: dict[str, Any] = {"question": cleaned, "answer": None, "error": None, "draft": ""}
        history = conversation(turns)
        turns.append(turn)
        yield self._view(turns, busy=True)
        try:
            for event in self.assistant.stream(cleaned, history):
                if isinstance(event, Delta):
                    turn["draft"] += event.text
                    yield self._view(turns, busy=True)
                elif isinstance(event, Answer):
                    turn["answer"] = event.to_dict()
        except QuestionError as exc:  # the chain's own check (should have been caught above)
            turns.pop()
            yield self._view(turns, notice=escape_markdown(str(exc)), box=question)
            return
        except AnswererError as exc:
            turn["error"] = f"The answer backend is not available: {exc}"
        except IndexProblem as exc:  # e.g. the Chroma server is down: say so, keep serving
            turn["error"] = f"The document index is not available: {exc}"
        except Exception:
            # The question's text stays out of the logs (RAG_LOG_QUESTIONS governs that).
            log.exception("answering a question failed")
            turn["error"] = "Something went wrong while answering; the error was logged. Please try again."
        if turn["answer"] is None and turn["error"] is None:
            turn["error"] = "No answer was produced. Please try again."
        turn["draft"] = ""
        yield self._view(turns, notice=escape_markdown(turn["error"] or ""))

    def ask_api(
        self, question: str, history: Sequence[dict[str, str]] | None, user: str = "api"
    ) -> dict[str, Any]:
        """The ``/ask`` endpoint: the JSON of ``rag ask --json``; ``ChatError`` for user errors."""
        try:
            cleaned = self._admit(question, user)
        except QuestionError as exc:
            raise ChatError(str(exc)) from None
        assert self.assistant is not None
        try:
            return self.assistant.ask(cleaned, list(history or [])).to_dict()
        except AnswererError as exc:
            raise ChatError(f"The answer backend is not available: {exc}") from None
        except IndexProblem as exc:
            raise ChatError(f"The document index is not available: {exc}") from None

    # -- feedback and reset ----------------------------------------------------------------

    def feedback(
        self,
        turns: Sequence[dict[str, Any]],
        index: int | Sequence[int],
        liked: bool | str,
        user: str = "anonymous",
    ) -> str:
        """Record a thumbs up/down on the answer at chat message ``index``; returns the notice."""
        position = index[0] if isinstance(index, (list, tuple)) else index
        if not isinstance(position, int) or position < 0 or position % 2 != 1 or position // 2 >= len(turns):
            return "Only answers can be rated."
        turn = turns[position // 2]
        answer = turn.get("answer")
        if not answer:
            return "This message has no answer to rate."
        rating: Literal["up", "down"]
        if liked in (True, "Like"):
            rating = "up"
        elif liked in (False, "Dislike"):
            rating = "down"
        else:
            return "Feedback withdrawn."
        assert self.feedback_path is not None
        record_feedback(
            self.feedback_path,
            rating=rating,
            question=str(answer.get("question", turn.get("question", ""))),
            answer=str(answer.get("answer", "")),
            citations=list(answer.get("citations") or []),
            channel="web",
            user=user,
            extra={"mode": answer.get("mode"), "standalone_question": answer.get("standalone_question")},
        )
        return "Thanks for the feedback."

    def new_chat(self) -> View:
        return self._view([])

    # -- rendering -------------------------------------------------------------------------

    def _view(
        self, turns: list[dict[str, Any]], *, busy: bool = False, notice: str = "", box: str = ""
    ) -> View:
        return View(
            box=box,
            busy=busy,
            messages=messages(turns),
            turns=turns,
            sources=sources_html(turns),
            notice=notice,
        )


def conversation(turns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history the chain reads: answered turns as user/assistant messages, each answer with
    the files it cited (so a follow-up searches those documents first).
    """
    history: list[dict[str, Any]] = []
    for turn in turns:
        answer = turn.get("answer")
        if answer:
            sources = list(dict.fromkeys(str(c.get("source")) for c in answer.get("citations") or []))
            history.append({"role": "user", "content": str(turn["question"])})
            history.append(
                {"role": "assistant", "content": str(answer.get("answer", "")), "sources": sources}
            )
    return history


def messages(turns: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The chat messages (two per turn, so answer ``t`` is message ``2t + 1``)."""
    out: list[dict[str, str]] = []
    for t, turn in enumerate(turns):
        out.append({"role": "user", "content": escape_markdown(str(turn["question"]))})
        answer = turn.get("answer")
        if turn.get("error"):
            content = f"*{escape_markdown(turn['error'])}*"
        elif answer:
            unsupported = [
                str(x.get("text", "")) for x in answer.get("sentences") or [] if x.get("supported") is False
            ]
            content = answer_markdown(str(answer.get("answer", "")), t, answer.get("note"), unsupported)
        else:
            content = answer_markdown(str(turn.get("draft", "")), t) or "…"
        out.append({"role": "assistant", "content": content})
    return out


def user_key(request: Any) -> str:
    """Whom a request counts against for the rate limit: the signed-in user, else the client."""
    if request is None:
        return "anonymous"
    username = getattr(request, "username", None)
    if username:
        return f"user:{username}"
    client = getattr(request, "client", None)
    host = getattr(client, "host", None) if client is not None else None
    return f"host:{host}" if host else f"session:{getattr(request, 'session_hash', '')}"


def build_ui(
    assistant: Assistant | None,
    settings: Settings,
    *,
    problem: str | None = None,
    limiter: RateLimiter | None = None,
    examples: Sequence[str] = EXAMPLES,
    library: DocumentLibrary | None = None,
) -> gr.Blocks:
    """The Gradio Blocks of the chat (serve it with ``serve``, which applies the settings), with
    the documents view of ``library`` in a tab beside it (``rag.web.documents``)."""
    import gradio as gr

    from rag.web.documents import DocumentsView, build_documents_tab

    chat = WebChat(assistant, settings, problem=problem, limiter=limiter, examples=examples)

    def show(view: View) -> tuple[Any, ...]:
        box = gr.Textbox(value=view.box, interactive=not view.busy)
        send = gr.Button(interactive=not view.busy)
        return box, send, view.messages, view.turns, view.sources, view.notice

    def respond(question: str, turns: list[dict[str, Any]], request: gr.Request) -> Iterator[tuple[Any, ...]]:
        for view in chat.respond(question, turns or [], user_key(request)):
            yield show(view)

    def use_example(data: gr.SelectData) -> str:
        value = data.value
        return str(value.get("text", "") if isinstance(value, dict) else value)

    def feedback(turns: list[dict[str, Any]], data: gr.LikeData, request: gr.Request) -> str:
        return chat.feedback(turns or [], data.index, data.liked, user_key(request))

    def new_chat() -> tuple[Any, ...]:
        return show(chat.new_chat())

    def ask(
        question: str, history: list[dict[str, str]] | None = None, request: Any = None
    ) -> dict[str, Any]:
        """Answer a question; returns the JSON of `rag ask --json` (answer, citations, ...).

        history: earlier messages, [{"role": "user" | "assistant", "content": "..."}].
        """
        try:
            return chat.ask_api(question, history, user_key(request))
        except ChatError as exc:
            raise gr.Error(str(exc)) from None

    # Gradio finds the request and event-data parameters, and gr.api its schema, from type
    # hints; under postponed annotations those are strings naming objects that are not module
    # globals here, so hand it the real types.
    respond.__annotations__["request"] = gr.Request
    use_example.__annotations__["data"] = gr.SelectData
    feedback.__annotations__.update(data=gr.LikeData, request=gr.Request)
    ask.__annotations__.update(
        question=str, history=list[dict[str, str]] | None, request=gr.Request, **{"return": dict[str, Any]}
    )

    with gr.Blocks(title=TITLE, fill_height=True, analytics_enabled=False) as demo:
        turns = gr.State([])
        with gr.Row(equal_height=False):
            gr.Markdown(f"## {TITLE}")
            gr.Markdown(chat.status(), elem_id="status")
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Chat", id="chat", elem_id="chat-tab"), gr.Row(equal_height=False):
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(
                        elem_id="chat",
                        label="Chat",
                        height="62vh",
                        placeholder="Ask a question about the documents. Every answer cites its passages.",
                        examples=[{"text": q} for q in chat.examples],
                        latex_delimiters=[],
                        buttons=["copy"],
                    )
                    notice = gr.Markdown("", elem_id="notice")
                    with gr.Row():
                        box = gr.Textbox(
                            placeholder="Your question…",
                            show_label=False,
                            scale=6,
                            max_lines=6,
                            autofocus=True,
                            elem_id="question",
                        )
                        send = gr.Button("Ask", variant="primary", scale=1, elem_id="send")
                    new = gr.Button("New chat", size="sm", elem_id="new-chat")
                with gr.Column(scale=2):
                    gr.Markdown("### Sources")
                    sources = gr.HTML(sources_html([]), elem_id="sources")
            if library is not None or problem is not None:
                build_documents_tab(DocumentsView(library, problem), demo, tabs)

        outputs = [box, send, chatbot, turns, sources, notice]
        answer_events = {"concurrency_id": "answer", "api_visibility": "private"}
        box.submit(respond, [box, turns], outputs, **answer_events)  # type: ignore[arg-type]
        send.click(respond, [box, turns], outputs, **answer_events)  # type: ignore[arg-type]
        chatbot.example_select(use_example, None, box, api_visibility="private").then(
            respond,
            [box, turns],
            outputs,
            **answer_events,  # type: ignore[arg-type]
        )
        chatbot.like(feedback, [turns], notice, api_visibility="private", concurrency_limit=None)
        new.click(new_chat, None, outputs, api_visibility="private", concurrency_limit=None)
        chatbot.clear(new_chat, None, outputs, api_visibility="private", concurrency_limit=None)
        gr.api(ask, api_name="ask", concurrency_id="answer")
    return demo


def launch_options(settings: Settings) -> dict[str, Any]:
    """The chat's serving options (``Blocks.launch``'s names; ``rag.web.server.mount_chat``
    applies them): address, users, page assets."""
    auth = [tuple(pair.split(":", 1)) for pair in settings.auth] or None
    return {
        "server_name": settings.host,
        "server_port": settings.port,
        "auth": auth,
        "auth_message": "Sign in to ask the documents." if auth else None,
        "share": False,
        "footer_links": ["api"],
        "css": CSS + DOCUMENTS_CSS,
        # One script for the page: the chat's and the documents view's click handlers.
        "js": f"() => {{ ({JS.strip()})(); ({DOCUMENTS_JS.strip()})(); }}",
    }


def assistant_or_problem(
    settings: Settings, *, embeddings: Embeddings | None = None
) -> tuple[Assistant | None, str | None]:
    """The assistant the chat serves, its index built or updated from the corpus first if need
    be (``open_assistant(..., ensure_index=True)``, unless ``RAG_INGEST_ON_START=false``: a
    replica that must never write); or None and the message the chat shows in place of answers
    when there is no usable index."""
    try:
        assistant = open_assistant(
            settings,
            embeddings=embeddings,
            ensure_index=settings.ingest_on_start,
            progress=log.warning,
            frontend="web",
        )
        return assistant, None
    except IndexProblem as exc:
        return None, f"{exc}. Fix it and run `rag ingest`, then restart the chat."


def open_documents(
    settings: Settings, assistant: Assistant | None, embeddings: Embeddings | None = None
) -> DocumentLibrary | None:
    """The documents service beside ``assistant`` (its uploads embedded with ``embeddings``, the
    model the assistant already loaded); None without an assistant (no index to show)."""
    if assistant is None:
        return None
    return open_library(settings, embeddings=embeddings, assistant=assistant)
