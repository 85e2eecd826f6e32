"""The Slack bot: answers mentions and direct messages in a thread, with its sources; in
Slack's assistant threads (the AI app's split view) it greets with suggested questions, titles
the thread, shows its status and streams the answer (``rag.slack.threads``).

``build_slack_app`` wires a Bolt ``App`` from its collaborators (the ``Assistant``, the settings
and a ``WebClient``), so tests hand in a client pointed at a fake Slack; ``run_slack`` is the
entry point of ``rag slack``: Socket Mode when an app token is set, HTTP (Events API) otherwise::

    client = build_client(settings)              # WebClient on settings.slack_api_url
    app = build_slack_app(assistant=assistant, settings=settings, client=client)
    build_http_server(app, "127.0.0.1", 3000).run()   # POST /slack/events

Block Kit rendering lives in ``rag.slack.format``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

from rag.answering import (
    Answer,
    Assistant,
    Delta,
    DocumentLibrary,
    IndexProblem,
    QuestionError,
    open_assistant,
    open_library,
)
from rag.config import Settings
from rag.feedback import record_feedback
from rag.observability import configure_logging, metrics_endpoint
from rag.ratelimit import RateLimiter
from rag.slack.format import (
    FEEDBACK_BLOCK_ID,
    FEEDBACK_DOWN,
    FEEDBACK_UP,
    SlackMessage,
    plain_message,
    render_answer,
    slack_to_plain,
)
from rag.slack.threads import STATUS_SEARCHING, STATUS_WRITING, StreamedReply, greet, set_status, set_title

if TYPE_CHECKING:
    import uvicorn
    from slack_bolt import App
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk import WebClient

log = logging.getLogger(__name__)

WORKING_REACTION = "eyes"
ERROR_TEXT = "Sorry, something went wrong while answering this. Please try again in a moment."
FEEDBACK_THANKS = "Thanks for the feedback!"
RATE_LIMIT_TEXT = (
    "You're asking faster than I can keep up (at most {limit} questions a minute)."
    " Please ask again in {wait:.0f} seconds."
)
# Message subtypes a person's question can have: plain, "also send to channel", with a file.
QUESTION_SUBTYPES = (None, "thread_broadcast", "file_share")
HISTORY_PAGES = 5  # conversations.replies pages (200 messages each) read for a thread's history


class SlackConfigError(ValueError):
    """A required Slack setting is missing or malformed; the message names the variable."""


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def check_slack_settings(settings: Settings) -> str:
    """Return the mode ("socket" or "http") or raise ``SlackConfigError`` saying what is missing.

    Never puts a token in the message.
    """
    bot = _secret(settings.slack_bot_token)
    app_token = _secret(settings.slack_app_token)
    if not bot:
        raise SlackConfigError(
            "RAG_SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-...) from your Slack"
            " app's OAuth & Permissions page (see docs/slack.md)"
        )
    if not bot.startswith("xox"):
        raise SlackConfigError("RAG_SLACK_BOT_TOKEN does not look like a Slack bot token (xoxb-...)")
    if app_token:
        if not app_token.startswith("xapp-"):
            raise SlackConfigError(
                "RAG_SLACK_APP_TOKEN must be an app-level token (xapp-...) with the connections:write scope"
            )
        return "socket"
    if not _secret(settings.slack_signing_secret):
        raise SlackConfigError(
            "HTTP mode needs RAG_SLACK_SIGNING_SECRET (Basic Information > Signing Secret); or set"
            " RAG_SLACK_APP_TOKEN (xapp-...) to use Socket Mode, which needs no public URL"
        )
    return "http"


def build_client(settings: Settings) -> WebClient:
    """A ``WebClient`` with the bot token, talking to ``settings.slack_api_url``."""
    from slack_sdk import WebClient

    base = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    return WebClient(token=_secret(settings.slack_bot_token) or None, base_url=base)


class RecentKeys:
    """Remembers keys for ``ttl_s`` seconds (bounded): ``add`` is False for a key seen before."""

    def __init__(self, ttl_s: float = 3600.0, max_size: int = 10_000) -> None:
        self.ttl_s, self.max_size = ttl_s, max_size
        self._seen: OrderedDict[Hashable, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, *keys: Hashable) -> bool:
        """Record ``keys``; True when none of them was seen before."""
        now = time.monotonic()
        with self._lock:
            while self._seen and (
                len(self._seen) > self.max_size or next(iter(self._seen.values())) < now - self.ttl_s
            ):
                self._seen.popitem(last=False)
            fresh = not any(k in self._seen for k in keys if k is not None)
            for k in keys:
                if k is not None:
                    self._seen[k] = now
            return fresh


class _AnswerStore:
    """The last answers posted, so a feedback click can record question, answer and citations."""

    def __init__(self, max_size: int = 2000) -> None:
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_size = max_size

    def put(self, answer: Answer) -> str:
        key = uuid.uuid4().hex[:16]
        with self._lock:
            self._items[key] = {
                "question": answer.question,
                "answer": answer.answer,
                "citations": [c.as_dict() for c in answer.citations],
                "refused": answer.refused,
            }
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(key)


def _ts(value: str | None) -> Decimal:
    try:
        return Decimal(value or "0")
    except InvalidOperation:
        return Decimal(0)


class SlackBot:
    """The listeners. Each takes what Bolt injects, so tests can call them directly too."""

    def __init__(
        self,
        *,
        assistant: Assistant,
        settings: Settings,
        library: DocumentLibrary | None = None,
        stream_interval_s: float = 1.0,
    ) -> None:
        self.assistant = assistant
        self.settings = settings
        self.library = library  # the documents, for the questions a new thread suggests
        self.stream_interval_s = stream_interval_s  # at most one streaming call this often
        self.recent = RecentKeys()
        self.limiter = RateLimiter(settings.rate_limit_per_minute, frontend="slack")
        self.answers = _AnswerStore()

    def register(self, app: App) -> None:
        from slack_bolt import Assistant as AssistantThreads

        # Messages in a DM's threads (the assistant container's threads among them) reach
        # ``on_thread_message``; mentions and top-level DMs the listeners below.
        threads = AssistantThreads(logger=logging.getLogger("rag.slack.bolt"))
        threads.thread_started(self.on_thread_started)
        threads.user_message(self.on_thread_message)
        # Answers come from the documents, not from the channel the person is looking at: no
        # context to keep (Bolt's default would re-read and edit our greeting at each change).
        threads.thread_context_changed(lambda: None)
        app.assistant(threads)
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.action(FEEDBACK_UP)(self.on_feedback)
        app.action(FEEDBACK_DOWN)(self.on_feedback)

    # -- events ---------------------------------------------------------------------------

    def on_mention(
        self, event: dict[str, Any], body: dict[str, Any], client: WebClient, context: Any
    ) -> None:
        self.handle(event, body, client, context)

    def on_thread_started(self, event: dict[str, Any], client: WebClient) -> None:
        """A new assistant thread: greet, and offer questions drawn from the corpus's titles."""
        try:
            documents = [d.to_dict() for d in self.library.documents()] if self.library else []
            greet(client, event.get("assistant_thread") or {}, documents)
        except Exception:
            log.exception("could not greet a new assistant thread")

    def on_thread_message(
        self, event: dict[str, Any], body: dict[str, Any], client: WebClient, context: Any
    ) -> None:
        self.handle(event, body, client, context, assistant_thread=True)

    def on_message(
        self, event: dict[str, Any], body: dict[str, Any], client: WebClient, context: Any
    ) -> None:
        # Only direct messages: in channels the bot answers when mentioned (app_mention).
        if event.get("channel_type") == "im":
            self.handle(event, body, client, context)

    def handle(
        self,
        event: dict[str, Any],
        body: dict[str, Any],
        client: WebClient,
        context: Any,
        *,
        assistant_thread: bool = False,
    ) -> None:
        """Answer one message in its thread, unless it is a bot's, an edit, or already seen.

        In an assistant thread the thread's status says what is happening (cleared at the end,
        whatever happened) and the answer streams; elsewhere, or when Slack refuses the status
        (a DM thread outside the assistant container), a 👀 reaction does and the answer is
        posted whole."""
        if event.get("bot_id") or event.get("subtype") not in QUESTION_SUBTYPES or not event.get("user"):
            return  # other bots, bot_message, message_changed/deleted, joins...: not questions
        if event.get("user") == getattr(context, "bot_user_id", None):
            return
        channel, ts = event.get("channel"), event.get("ts")
        if not channel or not ts:
            return
        # Slack retries a delivery it thinks failed (same event_id, X-Slack-Retry-Num), and a DM
        # that mentions the bot can arrive as two events: answer each message once.
        event_id = body.get("event_id")
        if not self.recent.add(("event", event_id) if event_id else None, ("message", channel, ts)):
            log.info("skipping a duplicate delivery of %s in %s", ts, channel)
            return
        thread_ts = event.get("thread_ts") or ts
        if not self.limiter.allow(event["user"]):
            wait = max(0.1, self.limiter.retry_after(event["user"]))
            limit = self.settings.rate_limit_per_minute
            self._post_safely(client, channel, thread_ts, RATE_LIMIT_TEXT.format(limit=limit, wait=wait))
            return
        status = assistant_thread and set_status(client, channel, thread_ts, STATUS_SEARCHING)
        if not status:
            self._react(client, "reactions_add", channel, ts)
        try:
            question = slack_to_plain(event.get("text") or "", getattr(context, "bot_user_id", None))
            history = self.thread_history(client, event, context) if event.get("thread_ts") else []
            if status:
                if question and not any(turn["role"] == "user" for turn in history):
                    set_title(client, channel, thread_ts, question)
                self._stream_answer(client, event, body, question, history)
            else:
                answer = self.assistant.ask(question, history)
                for message in render_answer(answer, feedback_id=self.answers.put(answer)):
                    self._post(client, channel, thread_ts, message)
        except QuestionError as exc:
            self._post_safely(client, channel, thread_ts, str(exc))
        except IndexProblem as exc:  # e.g. the Chroma server is down: say so, keep serving
            log.warning("answering %s in %s failed: %s", ts, channel, exc)
            self._post_safely(client, channel, thread_ts, f"The document index is not available: {exc}")
        except Exception:
            log.exception("answering %s in %s failed", ts, channel)
            self._post_safely(client, channel, thread_ts, ERROR_TEXT)
        finally:
            if status:
                set_status(client, channel, thread_ts, "")
            else:
                self._react(client, "reactions_remove", channel, ts)

    def _stream_answer(
        self,
        client: WebClient,
        event: dict[str, Any],
        body: dict[str, Any],
        question: str,
        history: list[dict[str, Any]],
    ) -> None:
        channel, thread_ts = event["channel"], event.get("thread_ts") or event["ts"]
        reply = StreamedReply(
            client,
            channel,
            thread_ts,
            user=event.get("user"),
            team=event.get("team") or body.get("team_id"),
            interval_s=self.stream_interval_s,
        )
        writing = False
        try:
            for piece in self.assistant.stream(question, history):
                if isinstance(piece, Delta):
                    if not writing:
                        writing = True
                        set_status(client, channel, thread_ts, STATUS_WRITING)
                    reply.add(piece.text)
                elif isinstance(piece, Answer):
                    reply.finish(piece, feedback_id=self.answers.put(piece))
                    return
        except BaseException:
            reply.abandon()
            raise

    def _cited_files(self, feedback_block: dict[str, Any]) -> list[str]:
        """Files an earlier answer of ours cited, when it was posted by this process."""
        for element in feedback_block.get("elements") or []:
            try:
                key = str(json.loads(element.get("value") or "{}").get("id", ""))
            except (ValueError, AttributeError):
                continue
            stored = self.answers.get(key)
            if stored is not None:
                return list(dict.fromkeys(str(c.get("source")) for c in stored.get("citations") or []))
        return []

    def thread_history(self, client: WebClient, event: dict[str, Any], context: Any) -> list[dict[str, Any]]:
        """The thread's earlier messages as chat turns: the bot's answers as ``assistant``,
        people's messages as ``user`` (mentions of the bot removed), other bots left out."""
        bot_user, bot_id = getattr(context, "bot_user_id", None), getattr(context, "bot_id", None)
        before = _ts(event["ts"])
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(HISTORY_PAGES):
            resp = client.conversations_replies(
                channel=event["channel"], ts=event["thread_ts"], limit=200, cursor=cursor
            )
            messages += resp.get("messages") or []
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        turns: list[dict[str, Any]] = []
        for m in sorted(messages, key=lambda m: _ts(m.get("ts"))):
            if _ts(m.get("ts")) >= before:
                continue
            ours = (bot_user and m.get("user") == bot_user) or (bot_id and m.get("bot_id") == bot_id)
            if ours:
                # Only answers (they carry the feedback buttons), not notices such as errors.
                feedback = [b for b in m.get("blocks") or [] if b.get("block_id") == FEEDBACK_BLOCK_ID]
                if feedback:
                    turn: dict[str, Any] = {
                        "role": "assistant",
                        "content": slack_to_plain(m.get("text") or ""),
                    }
                    sources = self._cited_files(feedback[0])
                    if sources:  # lets a follow-up search the documents this answer cited
                        turn["sources"] = sources
                    turns.append(turn)
            elif not m.get("bot_id") and m.get("subtype") in QUESTION_SUBTYPES:
                turns.append({"role": "user", "content": slack_to_plain(m.get("text") or "", bot_user)})
        return [t for t in turns if t["content"]]

    # -- feedback -------------------------------------------------------------------------

    def on_feedback(self, ack: Callable[[], Any], body: dict[str, Any], client: WebClient) -> None:
        """Record a 👍 / 👎 click in the shared feedback file, then thank the user privately."""
        ack()
        action = (body.get("actions") or [{}])[0]
        rating: Literal["up", "down"] = "up" if action.get("action_id") == FEEDBACK_UP else "down"
        try:
            value = json.loads(action.get("value") or "{}")
        except ValueError:
            value = {}
        message = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        user = (body.get("user") or {}).get("id")
        stored = self.answers.get(str(value.get("id", "")))
        if stored is None:
            # Posted before a restart: what the click itself carries is all there is.
            stored = {
                "question": value.get("q", ""),
                "answer": slack_to_plain(message.get("text") or ""),
                "citations": [],
            }
        record_feedback(
            self.settings.feedback_path,
            rating=rating,
            question=stored["question"],
            answer=stored["answer"],
            citations=stored["citations"],
            channel="slack",
            user=user,
            extra={
                "slack": {
                    "channel": channel,
                    "message_ts": message.get("ts"),
                    "thread_ts": message.get("thread_ts"),
                }
            },
        )
        if channel and user:
            try:
                client.chat_postEphemeral(
                    channel=channel, user=user, text=FEEDBACK_THANKS, thread_ts=message.get("thread_ts")
                )
            except Exception:
                log.warning("could not thank %s for feedback", user, exc_info=True)

    # -- Slack calls ----------------------------------------------------------------------

    @staticmethod
    def _post(client: WebClient, channel: str, thread_ts: str, message: SlackMessage) -> None:
        client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts,
            text=message.text,
            blocks=message.blocks,
            unfurl_links=False,
            unfurl_media=False,
        )

    def _post_safely(self, client: WebClient, channel: str, thread_ts: str, text: str) -> None:
        try:
            self._post(client, channel, thread_ts, plain_message(text))
        except Exception:
            log.exception("could not post an error message to %s", channel)

    @staticmethod
    def _react(client: WebClient, method: str, channel: str, ts: str) -> None:
        try:
            getattr(client, method)(channel=channel, timestamp=ts, name=WORKING_REACTION)
        except Exception as exc:  # noqa: BLE001 - a missing 👀 must not stop the answer
            log.warning("%s failed: %s", method, exc)


def build_slack_app(
    *,
    assistant: Assistant,
    settings: Settings,
    client: WebClient,
    socket_mode: bool = False,
    token_verification: bool = True,
    library: DocumentLibrary | None = None,
    stream_interval_s: float = 1.0,
) -> App:
    """The Bolt app with the bot's listeners.

    ``App()`` calls ``auth.test`` through ``client`` when ``token_verification`` is on (so the
    bot knows its own user id and ignores its messages): pass a client on a fake Slack in tests.
    HTTP mode (``socket_mode=False``) refuses to start without a signing secret, since every
    request's signature is checked against it. ``library`` lists the documents a new assistant
    thread suggests questions about (none without it). A streamed answer makes at most one Slack
    call per ``stream_interval_s`` (Slack rate-limits message edits and stream appends).
    """
    from slack_bolt import App

    secret = _secret(settings.slack_signing_secret)
    if not socket_mode and not secret:
        raise SlackConfigError("HTTP mode needs RAG_SLACK_SIGNING_SECRET to verify Slack's requests")
    app = App(
        client=client,
        signing_secret=secret,
        token_verification_enabled=token_verification,
        process_before_response=False,  # ack within Slack's 3 s, answer afterwards
        logger=logging.getLogger("rag.slack.bolt"),
        name="rag",
    )
    SlackBot(
        assistant=assistant, settings=settings, library=library, stream_interval_s=stream_interval_s
    ).register(app)
    return app


def build_http_server(app: App, host: str, port: int, path: str = "/slack/events") -> uvicorn.Server:
    """An Events API endpoint at ``path`` on ``host:port`` (Bolt's Starlette adapter on uvicorn),
    with ``GET /healthz`` and ``GET /metrics`` (Prometheus) beside it.

    ``App.start`` would bind 0.0.0.0 whatever the settings say; this binds ``host``.
    """
    import uvicorn
    from slack_bolt.adapter.starlette import SlackRequestHandler
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    handler = SlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route(path, events, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/metrics", metrics_endpoint(), methods=["GET"]),  # Prometheus scrapes it
    ]
    web = Starlette(routes=routes)
    return uvicorn.Server(uvicorn.Config(web, host=host, port=port, log_level="info", lifespan="off"))


def build_socket_mode_handler(app: App, settings: Settings) -> SocketModeHandler:
    """Socket Mode: the bot dials out to Slack over a websocket; no public URL needed."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    return SocketModeHandler(app, _secret(settings.slack_app_token))


def run_slack(settings: Settings) -> None:
    """``rag slack``: check the tokens, load the index, then serve until interrupted."""
    from slack_bolt.error import BoltError

    configure_logging(settings)
    try:
        mode = check_slack_settings(settings)
    except SlackConfigError as exc:
        sys.exit(f"error: {exc}")
    try:
        assistant = open_assistant(settings)
    except IndexProblem as exc:
        sys.exit(f"error: {exc}")
    assistant.frontend = "slack"  # its questions are counted and logged as Slack's
    try:
        app = build_slack_app(
            assistant=assistant,
            settings=settings,
            client=build_client(settings),
            socket_mode=mode == "socket",
            library=open_library(settings, assistant=assistant),
        )
    except BoltError as exc:
        sys.exit(f"error: Slack did not accept the bot token ({exc})")
    if mode == "socket":
        log.info("starting in Socket Mode")
        build_socket_mode_handler(app, settings).start()
    else:
        log.info(
            "starting in HTTP mode: events at http://%s:%s/slack/events",
            settings.slack_host,
            settings.slack_port,
        )
        build_http_server(app, settings.slack_host, settings.slack_port).run()
