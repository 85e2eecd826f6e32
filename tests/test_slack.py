"""The Slack bot against a fake Slack: signed Events API requests to the bot served on loopback,
a fake Socket Mode websocket, and a fake Web API recording what Slack would receive."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from rag.answering import Answer, Assistant, prompts
from rag.answering.condense import heuristic_condense
from rag.config import Settings
from rag.feedback import read_feedback
from rag.slack import bot as slack_mod
from rag.slack.bot import (
    ERROR_TEXT,
    SlackConfigError,
    build_client,
    build_http_server,
    build_slack_app,
    build_socket_mode_handler,
    check_slack_settings,
    run_slack,
)
from rag.slack.format import slack_to_plain
from tests.conftest import make_settings
from tests.fake_slack import (
    BOT_ID,
    BOT_USER,
    FakeSlackAPI,
    FakeSocketMode,
    direct_message,
    event_callback,
    mention,
    sign,
)
from tests.fakes import SMALL_CORPUS, build_fake_assistant, write_corpus

BOT_TOKEN = "xoxb-test-bot-token-123"
APP_TOKEN = "xapp-1-test-app-token-456"
SECRET = "test-signing-secret-789"

EVIL_DOC = """---
title: "Zebra notice <!here>"
source_url: https://example.org/zebra
---

# Zebra

## Alerts <!channel>

The zebra migration alert says <@U999> must click <http://evil.example|your bank> now & stay calm.
"""

QUESTION = "What policy does the author call an immense failure?"


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeSlackAPI]:
    api = FakeSlackAPI().start()
    yield api
    api.stop()


@pytest.fixture(autouse=True)
def _fresh_api(fake_api: FakeSlackAPI) -> None:
    fake_api.reset()


@pytest.fixture(scope="module")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp = tmp_path_factory.mktemp("slack")
    write_corpus(tmp / "corpus", {**SMALL_CORPUS, "zebra.md": EVIL_DOC})
    return make_settings(tmp)


@pytest.fixture(scope="module")
def fake_assistant(corpus_settings: Settings) -> Assistant:
    return build_fake_assistant(corpus_settings)


class SpyAssistant:
    """Delegates to a real assistant and records what the bot asked."""

    def __init__(self, inner: Any, fail: Exception | None = None) -> None:
        self.inner, self.fail = inner, fail
        self.asked: list[tuple[str, list[dict[str, str]]]] = []
        self.answers: list[Any] = []

    def ask(self, question: str, history: Sequence[dict[str, str]] | None = None) -> Any:
        self.asked.append((question, list(history or [])))
        if self.fail:
            raise self.fail
        self.answers.append(self.inner.ask(question, history))
        return self.answers[-1]


def slack_settings(base: Settings, api: FakeSlackAPI, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": SecretStr(BOT_TOKEN),
        "slack_signing_secret": SecretStr(SECRET),
        "slack_api_url": api.url,
    }
    values.update(overrides)
    return base.model_copy(update=values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve the bot's Events API endpoint on a free loopback port; yield its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = build_http_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "bot server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/slack/events"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Bot:
    url: str
    api: FakeSlackAPI
    settings: Settings
    assistant: Any

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def send(
        self,
        payload: dict[str, Any],
        *,
        secret: str = SECRET,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        body = json.dumps(payload).encode()
        return self.post(body, {**sign(secret, body, timestamp), **(headers or {})})

    def click(self, payload: dict[str, Any]) -> tuple[int, str]:
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        headers = sign(SECRET, body)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self.post(body, headers)

    def replies_to(self, ts: str) -> list[Any]:
        return [c for c in self.api.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]

    def ask_and_wait(self, event: dict[str, Any], **kwargs: Any) -> Any:
        """Send an event and return the reply posted in its thread."""
        status, _ = self.send(event_callback(event), **kwargs)
        assert status == 200
        thread = event.get("thread_ts") or event["ts"]
        self.api.wait_until(lambda: bool(self.replies_to(thread)))
        return self.replies_to(thread)[0]


@contextmanager
def running_bot(base: Settings, api: FakeSlackAPI, assistant: Any, **overrides: Any) -> Iterator[Bot]:
    settings = slack_settings(base, api, **overrides)
    app = build_slack_app(assistant=assistant, settings=settings, client=build_client(settings))
    with serving(app) as url:
        yield Bot(url, api, settings, assistant)


@pytest.fixture
def bot(corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant) -> Iterator[Bot]:
    with running_bot(corpus_settings, fake_api, SpyAssistant(fake_assistant)) as b:
        yield b


def blocks_text(call: Any) -> str:
    return "\n".join(b["text"]["text"] for b in call.params["blocks"] if b["type"] == "section")


# -- HTTP mode: the Events API ------------------------------------------------------------


def test_url_verification_echoes_challenge(bot: Bot) -> None:
    status, body = bot.send({"type": "url_verification", "token": "t", "challenge": "chal-123"})
    assert status == 200 and "chal-123" in body


def test_mention_is_answered_in_a_thread_with_sources(bot: Bot) -> None:
    event = mention(QUESTION)
    reply = bot.ask_and_wait(event)
    assert reply.params["channel"] == "C1"
    assert reply.params["thread_ts"] == event["ts"]
    assert reply.params["unfurl_links"] is False
    text = blocks_text(reply)
    assert "an immense failure. [1]" in text
    assert "*[1]* <https://example.org/article|Why Talk to Pyongyang>" in text
    links = re.findall(r"<([^<>|]+)\|[^<>]*>", text)
    assert links and all(u.startswith("https://example.org/") for u in links)
    assert "immense failure" in reply.params["text"]
    assert reply.params["blocks"][-1]["block_id"] == "rag_feedback"
    # The bot asked the question without its mention.
    assert bot.assistant.asked == [(QUESTION, [])]
    # 👀 added on the mention before the reply, removed after it.
    bot.api.wait_for("reactions.remove")
    methods = [
        c.method
        for c in bot.api.calls
        if c.method in ("reactions.add", "chat.postMessage", "reactions.remove")
    ]
    assert methods == ["reactions.add", "chat.postMessage", "reactions.remove"]
    for call in bot.api.calls_to("reactions.add") + bot.api.calls_to("reactions.remove"):
        assert (call.params["channel"], call.params["timestamp"], call.params["name"]) == (
            "C1",
            event["ts"],
            "eyes",
        )
    # The Web API calls carried the bot token (and only there: see the logging test).
    assert reply.headers["Authorization"] == f"Bearer {BOT_TOKEN}"


def test_mention_inside_a_thread_keeps_the_parent_thread(bot: Bot) -> None:
    event = mention(QUESTION, thread_ts="1699999999.000001")
    reply = bot.ask_and_wait(event)
    assert reply.params["thread_ts"] == "1699999999.000001"
    (replies_call,) = bot.api.calls_to("conversations.replies")
    assert replies_call.params["channel"] == "C1" and replies_call.params["ts"] == "1699999999.000001"


def test_direct_message_is_answered_in_a_thread(bot: Bot) -> None:
    event = direct_message("What is North Korea's GDP?")
    reply = bot.ask_and_wait(event)
    assert reply.params["channel"] == "D1" and reply.params["thread_ts"] == event["ts"]
    assert "40 billion" in blocks_text(reply)
    assert "<https://example.org/factbook|Factbook: Korea, North>" in blocks_text(reply)


def test_direct_message_with_a_file_is_answered(bot: Bot) -> None:
    event = direct_message("What is North Korea's GDP?", subtype="file_share", files=[{"id": "F1"}])
    reply = bot.ask_and_wait(event)
    assert "40 billion" in blocks_text(reply)


def test_follow_up_in_a_thread_uses_the_thread_as_history(bot: Bot) -> None:
    parent = mention(QUESTION)
    first = bot.ask_and_wait(parent)
    # What conversations.replies returns for the thread: the question, a remark by someone else,
    # the bot's answer as Slack stores it, another bot's message (left out).
    bot.api.threads[("C1", parent["ts"])] = [
        {"type": "message", "user": "U1", "text": parent["text"], "ts": parent["ts"]},
        {
            "type": "message",
            "user": "U2",
            "text": "Interesting &amp; useful",
            "ts": "1700000499.000001",
            "thread_ts": parent["ts"],
        },
        {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "text": first.params["text"],
            "blocks": first.params["blocks"],
            "ts": "1700000500.000001",
            "thread_ts": parent["ts"],
        },
        {
            "type": "message",
            "subtype": "bot_message",
            "bot_id": "BOTHER",
            "text": "beep",
            "ts": "1700000502.000001",
            "thread_ts": parent["ts"],
        },
    ]
    follow = mention("Who wrote it?", thread_ts=parent["ts"], ts="1700000600.000001")
    bot.api.threads[("C1", parent["ts"])].append(
        {
            "type": "message",
            "user": "U1",
            "text": follow["text"],
            "ts": follow["ts"],
            "thread_ts": parent["ts"],
        }
    )
    status, _ = bot.send(event_callback(follow))
    assert status == 200
    bot.api.wait_for("chat.postMessage", 2)
    question, history = bot.assistant.asked[-1]
    assert question == "Who wrote it?"
    assert history == [
        {"role": "user", "content": QUESTION},
        {"role": "user", "content": "Interesting & useful"},
        {
            "role": "assistant",
            "content": slack_to_plain(first.params["text"]),
            # The files the first answer cited, so the follow-up searches them first.
            "sources": list(dict.fromkeys(c.passage.source for c in bot.assistant.answers[0].citations)),
        },
    ]
    assert history[-1]["sources"]
    second = bot.api.calls_to("chat.postMessage")[1]
    assert second.params["thread_ts"] == parent["ts"]
    assert second.params["blocks"][-1]["block_id"] == "rag_feedback"
    # The chain used the thread: the follow-up was condensed with the history it was given.
    assert bot.assistant.answers[-1].standalone_question == heuristic_condense("Who wrote it?", history)
    assert bot.assistant.answers[-1].standalone_question != "Who wrote it?"


def test_forged_and_stale_requests_are_rejected(bot: Bot) -> None:
    forged = event_callback(mention(QUESTION))
    assert bot.send(forged, secret="wrong-secret")[0] == 401
    stale = event_callback(mention(QUESTION))
    assert bot.send(stale, timestamp=int(time.time()) - 6 * 60)[0] == 401
    unsigned = json.dumps(event_callback(mention(QUESTION))).encode()
    assert bot.post(unsigned, {"Content-Type": "application/json"})[0] == 401
    # A valid request afterwards is answered; it is the only thing Slack received.
    good = mention(QUESTION)
    bot.ask_and_wait(good)
    bot.api.wait_for("reactions.remove")
    assert [c.params["thread_ts"] for c in bot.api.calls_to("chat.postMessage")] == [good["ts"]]
    assert len(bot.api.calls_to("reactions.add")) == 1


def test_retried_and_duplicate_deliveries_are_answered_once(bot: Bot) -> None:
    event = mention(QUESTION)
    payload = event_callback(event)
    bot.ask_and_wait(event)
    # Slack's retry of the same delivery, and the same message arriving as a second event
    # (a mention in a DM comes as both app_mention and message.im, with different event ids).
    assert (
        bot.send(payload, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})[0]
        == 200
    )
    assert bot.send(event_callback(dict(event, type="message", channel_type="im")))[0] == 200
    sentinel = mention("What is North Korea's GDP?")
    bot.ask_and_wait(sentinel)
    assert len(bot.replies_to(event["ts"])) == 1
    assert len(bot.assistant.asked) == 2


def test_own_and_other_bots_messages_and_edits_are_ignored(bot: Bot) -> None:
    ignored = [
        direct_message(QUESTION, user=BOT_USER),  # the bot's own message
        direct_message(QUESTION, bot_id=BOT_ID),
        direct_message(QUESTION, user="U7", bot_id="BOTHER"),  # another bot
        direct_message(QUESTION, subtype="bot_message", bot_id="BOTHER", user=None),
        direct_message(QUESTION, subtype="message_changed"),
        dict(direct_message(QUESTION), channel_type="channel"),  # channel chatter without a mention
    ]
    for event in ignored:
        assert bot.send(event_callback(event))[0] == 200
    sentinel = direct_message("What is North Korea's GDP?")
    bot.ask_and_wait(sentinel)
    bot.api.wait_for("reactions.remove")
    assert [c.params["thread_ts"] for c in bot.api.calls_to("chat.postMessage")] == [sentinel["ts"]]
    assert len(bot.api.calls_to("reactions.add")) == 1
    assert len(bot.assistant.asked) == 1


class RefusingAssistant:
    """What the chain returns when nothing relevant was retrieved."""

    def ask(self, question: str, history: Sequence[dict[str, str]] | None = None) -> Answer:
        return Answer(
            question=question,
            answer=prompts.refusal(),
            refused=True,
            citations=[],
            retrieved=[],
            mode="extractive",
        )


def test_refusal_is_plain(corpus_settings: Settings, fake_api: FakeSlackAPI) -> None:
    with running_bot(corpus_settings, fake_api, RefusingAssistant()) as b:
        reply = b.ask_and_wait(mention("How do penguins juggle snowballs on Saturn?"))
    assert blocks_text(reply) == prompts.refusal() == reply.params["text"]
    assert [b["type"] for b in reply.params["blocks"]] == ["section", "actions"]


def test_document_text_is_escaped_not_mentions(bot: Bot) -> None:
    reply = bot.ask_and_wait(mention("What does the zebra migration alert say?"))
    text = blocks_text(reply)
    assert "&lt;@U999&gt; must click &lt;http://evil.example|your bank&gt; now &amp; stay calm" in text
    assert "_Alerts &lt;!channel&gt;_" in text
    assert "<https://example.org/zebra|Zebra notice &lt;!here&gt;>" in text
    for inner in re.findall(r"<([^<>]*)>", text + reply.params["text"]):
        assert re.fullmatch(r"https://example\.org/[^\s|<>]*\|[^<>]*", inner), inner


def test_failure_posts_an_error_and_removes_the_reaction(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    spy = SpyAssistant(fake_assistant, fail=RuntimeError("index exploded"))
    with running_bot(corpus_settings, fake_api, spy) as b:
        event = mention(QUESTION)
        reply = b.ask_and_wait(event)
        assert reply.params["text"] == ERROR_TEXT and reply.params["thread_ts"] == event["ts"]
        assert "index exploded" not in json.dumps(reply.params)
        b.api.wait_for("reactions.remove")


def test_empty_question_gets_the_reason(bot: Bot) -> None:
    event = mention("")
    reply = bot.ask_and_wait(event)
    assert reply.params["text"] == "Please type a question."
    bot.api.wait_for("reactions.remove")


def test_reaction_failure_does_not_stop_the_answer(bot: Bot) -> None:
    bot.api.fail["reactions.add"] = "missing_scope"
    reply = bot.ask_and_wait(mention(QUESTION))
    assert "immense failure" in reply.params["text"]


def test_rate_limit_per_user(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    spy = SpyAssistant(fake_assistant)
    with running_bot(corpus_settings, fake_api, spy, rate_limit_per_minute=2) as b:
        for _ in range(2):
            b.ask_and_wait(mention(QUESTION, user="U1"))
        limited = mention(QUESTION, user="U1")
        reply = b.ask_and_wait(limited)
        assert reply.params["text"].startswith("You're asking faster than I can keep up (at most 2 questions")
        assert len(spy.asked) == 2
        other = b.ask_and_wait(mention(QUESTION, user="U2"))
        assert "immense failure" in other.params["text"]


def test_feedback_click_is_recorded(bot: Bot) -> None:
    event = mention(QUESTION)
    reply = bot.ask_and_wait(event)
    up = reply.params["blocks"][-1]["elements"][0]
    before = len(read_feedback(bot.settings.feedback_path))
    click = {
        "type": "block_actions",
        "user": {"id": "U1", "username": "ann"},
        "api_app_id": "A1",
        "team": {"id": "T1"},
        "container": {"type": "message", "message_ts": "1700000900.000001", "channel_id": "C1"},
        "channel": {"id": "C1", "name": "general"},
        "message": {
            "type": "message",
            "ts": "1700000900.000001",
            "thread_ts": event["ts"],
            "text": reply.params["text"],
            "blocks": reply.params["blocks"],
        },
        "trigger_id": "1.2.3",
        "response_url": bot.api.url + "response",
        "actions": [
            {
                "action_id": up["action_id"],
                "block_id": "rag_feedback",
                "value": up["value"],
                "type": "button",
                "action_ts": "1700000901.000001",
            }
        ],
    }
    assert bot.click(click)[0] == 200
    (thanks,) = bot.api.wait_for("chat.postEphemeral")
    assert thanks.params["user"] == "U1" and thanks.params["channel"] == "C1"
    assert thanks.params["thread_ts"] == event["ts"]
    records = read_feedback(bot.settings.feedback_path)[before:]
    assert len(records) == 1
    rec = records[0]
    assert rec["channel"] == "slack" and rec["rating"] == "up" and rec["user"] == "U1"
    assert rec["question"] == QUESTION and "immense failure" in rec["answer"]
    assert [c["url"] for c in rec["citations"]] == ["https://example.org/article"]
    assert rec["citations"][0]["quote"]
    assert rec["slack"] == {"channel": "C1", "message_ts": "1700000900.000001", "thread_ts": event["ts"]}
    # 👎 on an answer posted before a restart: recorded from what the click carries.
    down = dict(
        click,
        actions=[
            {
                **click["actions"][0],
                "action_id": "rag_feedback_down",
                "value": json.dumps({"id": "gone", "q": "Old question?"}),
            }
        ],
    )
    assert bot.click(down)[0] == 200
    bot.api.wait_for("chat.postEphemeral", 2)
    rec = read_feedback(bot.settings.feedback_path)[-1]
    assert (
        rec["rating"] == "down" and rec["question"] == "Old question?" and "immense failure" in rec["answer"]
    )


def test_forged_feedback_click_is_rejected(bot: Bot) -> None:
    body = urllib.parse.urlencode({"payload": json.dumps({"type": "block_actions", "actions": []})}).encode()
    headers = sign("wrong", body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert bot.post(body, headers)[0] == 401


def test_tokens_are_never_logged(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bot.send(event_callback(mention(QUESTION)), secret="forged")  # Bolt logs rejected requests
    bot.ask_and_wait(mention(QUESTION))
    bot.api.wait_for("reactions.remove")
    assert caplog.records  # debug logging was on
    for secret in (BOT_TOKEN, SECRET):
        assert secret not in caplog.text


# -- configuration and the entry point ----------------------------------------------------


def test_check_slack_settings(tmp_path: Path) -> None:
    base = make_settings(tmp_path)
    with pytest.raises(SlackConfigError, match="RAG_SLACK_BOT_TOKEN"):
        check_slack_settings(base)
    http = base.model_copy(update={"slack_bot_token": SecretStr(BOT_TOKEN)})
    with pytest.raises(SlackConfigError, match="RAG_SLACK_SIGNING_SECRET") as err:
        check_slack_settings(http)
    assert BOT_TOKEN not in str(err.value)
    assert check_slack_settings(http.model_copy(update={"slack_signing_secret": SecretStr(SECRET)})) == "http"
    assert check_slack_settings(http.model_copy(update={"slack_app_token": SecretStr(APP_TOKEN)})) == "socket"
    with pytest.raises(SlackConfigError, match="xapp-"):
        check_slack_settings(http.model_copy(update={"slack_app_token": SecretStr("xoxb-wrong-kind")}))


def test_http_mode_needs_a_signing_secret(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    settings = slack_settings(corpus_settings, fake_api, slack_signing_secret=None)
    with pytest.raises(SlackConfigError, match="SIGNING_SECRET"):
        build_slack_app(assistant=fake_assistant, settings=settings, client=build_client(settings))


def test_run_slack_without_tokens_exits_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run_slack(make_settings(tmp_path))
    assert "RAG_SLACK_BOT_TOKEN is not set" in str(exc.value.code)


def test_run_slack_serves_http_mode_on_the_configured_address(
    corpus_settings: Settings,
    fake_api: FakeSlackAPI,
    fake_assistant: Assistant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servers: list[Any] = []

    def capture(app: Any, host: str, port: int, path: str = "/slack/events") -> Any:
        servers.append(build_http_server(app, host, port, path))
        return servers[-1]

    monkeypatch.setattr(slack_mod, "open_assistant", lambda settings: fake_assistant)
    monkeypatch.setattr(slack_mod, "build_http_server", capture)
    settings = slack_settings(corpus_settings, fake_api, slack_port=free_port())
    thread = threading.Thread(target=run_slack, args=(settings,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not (servers and servers[0].started):
        assert time.monotonic() < deadline and thread.is_alive(), "rag slack did not start"
        time.sleep(0.05)
    try:
        assert servers[0].config.host == "127.0.0.1"
        b = Bot(f"http://127.0.0.1:{settings.slack_port}/slack/events", fake_api, settings, None)
        status, body = b.send({"type": "url_verification", "challenge": "c-42"})
        assert status == 200 and json.loads(body) == {"challenge": "c-42"}
        assert fake_api.calls_to("auth.test")
    finally:
        servers[0].should_exit = True
        thread.join(10)


# -- Socket Mode -------------------------------------------------------------------------


@contextmanager
def socket_mode_bot(base: Settings, api: FakeSlackAPI, assistant: Any) -> Iterator[FakeSocketMode]:
    ws = FakeSocketMode().start()
    api.socket_url = ws.url
    settings = slack_settings(base, api, slack_signing_secret=None, slack_app_token=SecretStr(APP_TOKEN))
    app = build_slack_app(
        assistant=assistant, settings=settings, client=build_client(settings), socket_mode=True
    )
    handler = build_socket_mode_handler(app, settings)
    handler.connect()
    try:
        assert ws.connected.wait(10), "the bot did not open the websocket"
        yield ws
    finally:
        handler.close()
        ws.stop()


def test_socket_mode_answers_and_acks(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    spy = SpyAssistant(fake_assistant)
    with socket_mode_bot(corpus_settings, fake_api, spy) as ws:
        (opened,) = fake_api.calls_to("apps.connections.open")
        assert opened.headers["Authorization"] == f"Bearer {APP_TOKEN}"
        event = mention(QUESTION)
        payload = event_callback(event)
        ws.send_event("env-1", payload)
        (reply,) = fake_api.wait_for("chat.postMessage")
        assert reply.params["channel"] == "C1" and reply.params["thread_ts"] == event["ts"]
        assert "<https://example.org/article|Why Talk to Pyongyang>" in blocks_text(reply)
        # A redelivery (retry_attempt) is acked but not answered again.
        ws.send_event("env-2", payload, retry_attempt=1)
        sentinel = direct_message("What is North Korea's GDP?")
        ws.send_event("env-3", event_callback(sentinel))
        fake_api.wait_until(lambda: len(fake_api.calls_to("chat.postMessage")) >= 2)
        fake_api.wait_until(lambda: {"env-1", "env-2", "env-3"} <= {a.get("envelope_id") for a in ws.acks})
        assert [c.params["thread_ts"] for c in fake_api.calls_to("chat.postMessage")] == [
            event["ts"],
            sentinel["ts"],
        ]
        assert len(spy.asked) == 2


# -- the real answering chain and index ---------------------------------------------------


@pytest.fixture(scope="module")
def real_assistant(real_index: Settings) -> Assistant:
    from rag.answering import open_assistant

    return open_assistant(real_index)


@pytest.mark.integration
def test_real_chain_answers_and_follows_up_in_a_thread(
    real_index: Settings, real_assistant: Assistant, fake_api: FakeSlackAPI
) -> None:
    with running_bot(real_index, fake_api, SpyAssistant(real_assistant)) as b:
        parent = mention("According to the 2016 CIA Factbook, what's North Korea's population?")
        first = b.ask_and_wait(parent)
        text = blocks_text(first)
        assert "25,115,311" in text or "25.1" in text
        assert "<https://www.cia.gov/the-world-factbook/countries/north-korea/|CIA World Factbook" in text
        for url in re.findall(r"<([^<>|]+)\|", text):
            assert url.startswith("https://")
        b.api.threads[("C1", parent["ts"])] = [
            {"type": "message", "user": "U1", "text": parent["text"], "ts": parent["ts"]},
            {
                "type": "message",
                "user": BOT_USER,
                "bot_id": BOT_ID,
                "text": first.params["text"],
                "blocks": first.params["blocks"],
                "ts": "1700000700.000001",
                "thread_ts": parent["ts"],
            },
        ]
        follow = mention("And how many people live in the capital?", thread_ts=parent["ts"])
        status, _ = b.send(event_callback(follow))
        assert status == 200
        b.api.wait_for("chat.postMessage", 2)
        second = b.api.calls_to("chat.postMessage")[1]
        assert second.params["thread_ts"] == parent["ts"]
        assert "2.863" in blocks_text(second)
        assert b.assistant.asked[-1][1][0]["content"].startswith("According to the 2016 CIA Factbook")
        b.api.wait_for("reactions.remove", 2)
        # Nothing relevant in the corpus: a plain refusal, no sources.
        refusal = b.ask_and_wait(mention("How do penguins juggle snowballs on Saturn?"))
        assert blocks_text(refusal) == prompts.refusal()
        assert "*Sources*" not in json.dumps(refusal.params["blocks"])


@pytest.mark.integration
def test_real_chain_over_socket_mode(
    real_index: Settings, real_assistant: Assistant, fake_api: FakeSlackAPI
) -> None:
    with socket_mode_bot(real_index, fake_api, real_assistant) as ws:
        event = direct_message("What policy does DePetris call an immense failure?")
        ws.send_event("env-real", event_callback(event))
        (reply,) = fake_api.wait_for("chat.postMessage", timeout=60)
        assert reply.params["channel"] == "D1" and reply.params["thread_ts"] == event["ts"]
        text = blocks_text(reply)
        assert "strategic patience" in text.lower()
        assert "*Sources*" in text and re.search(r"^\*\[\d+\]\* ", text, re.MULTILINE)


def test_manifest_asks_for_what_the_bot_uses() -> None:
    import yaml

    manifest = yaml.safe_load((Path(__file__).parent.parent / "docs" / "slack-app-manifest.yaml").read_text())
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "app_mentions:read",
        "chat:write",
        "reactions:write",
        "channels:history",
        "groups:history",
        "im:history",
        "im:read",
        "im:write",
        "assistant:write",
    }
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == [
        "app_mention",
        "message.im",
        "assistant_thread_started",
        "assistant_thread_context_changed",
    ]
    assert manifest["features"]["assistant_view"]["assistant_description"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
