"""Slack's assistant threads against the fake Slack: the greeting's suggested prompts, the
thread's title, the status while answering (cleared even when answering fails), the answer
streamed into the thread (or edited into one message where streaming is refused), retries."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from rag.answering import Answer, Assistant, Delta, open_library
from rag.config import Settings
from rag.slack.bot import ERROR_TEXT, build_client, build_slack_app
from rag.slack.format import escape
from rag.slack.threads import (
    GREETING,
    STATUS_SEARCHING,
    STATUS_WRITING,
    StreamedReply,
    suggested_prompts,
)
from tests.conftest import make_settings
from tests.fake_slack import FakeSlackAPI, direct_message, event_callback, mention, next_ts
from tests.fakes import SMALL_CORPUS, build_fake_assistant, write_corpus
from tests.test_slack import EVIL_DOC, QUESTION, Bot, serving, slack_settings

STATUS = "assistant.threads.setStatus"
STREAM_CALLS = ("chat.startStream", "chat.appendStream", "chat.stopStream")


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
    tmp = tmp_path_factory.mktemp("slack-assistant")
    write_corpus(tmp / "corpus", {**SMALL_CORPUS, "zebra.md": EVIL_DOC})
    return make_settings(tmp)


@pytest.fixture(scope="module")
def fake_assistant(corpus_settings: Settings) -> Assistant:
    return build_fake_assistant(corpus_settings)


class StreamingSpy:
    """The real (fake-model) assistant, streamed; records questions; can fail after a piece.
    With ``words`` each piece is handed on a word at a time, as a model writes."""

    def __init__(self, inner: Assistant, fail_after: int | None = None, words: bool = False) -> None:
        self.inner, self.fail_after, self.words = inner, fail_after, words
        self.asked: list[tuple[str, list[dict[str, Any]]]] = []
        self.answers: list[Answer] = []

    def stream(self, question: str, history: Sequence[dict[str, Any]] | None = None) -> Iterator[Any]:
        self.asked.append((question, list(history or [])))
        sent = 0
        for event in self.inner.stream(question, history):
            if isinstance(event, Answer):
                self.answers.append(event)
                yield event
                continue
            split = re.findall(r"\S+\s*|\s+", event.text) if self.words else [event.text]
            for piece in split:
                if self.fail_after is not None and sent >= self.fail_after:
                    raise RuntimeError("the model fell over")
                sent += 1
                yield Delta(piece)

    def ask(self, question: str, history: Sequence[dict[str, Any]] | None = None) -> Answer:
        for event in self.stream(question, history):
            if isinstance(event, Answer):
                return event
        raise AssertionError("no answer")


@contextmanager
def running(settings: Settings, api: FakeSlackAPI, assistant: Any, interval_s: float = 0.0) -> Iterator[Bot]:
    s = slack_settings(settings, api)
    client, library = build_client(s), open_library(settings)
    app = build_slack_app(
        assistant=assistant, settings=s, client=client, library=library, stream_interval_s=interval_s
    )
    with serving(app) as url:
        yield Bot(url, api, s, assistant)


def thread_started(channel: str = "D1", thread_ts: str | None = None) -> dict[str, Any]:
    return {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": "U1",
            "context": {"channel_id": "C1", "team_id": "T1", "enterprise_id": None},
            "channel_id": channel,
            "thread_ts": thread_ts or next_ts(),
        },
        "event_ts": next_ts(),
    }


def ask_in_thread(bot: Bot, text: str, thread_ts: str, **headers: str) -> dict[str, Any]:
    event = direct_message(text, thread_ts=thread_ts)
    assert bot.send(event_callback(event), headers=headers or None)[0] == 200
    return event


def wait_done(bot: Bot, thread_ts: str, count: int = 1) -> None:
    """Until ``count`` answers in ``thread_ts`` ended with their status cleared."""
    bot.api.wait_until(
        lambda: (
            sum(
                1
                for c in bot.api.calls
                if c.method == STATUS and c.params["thread_ts"] == thread_ts and c.params["status"] == ""
            )
            >= count
        )
    )


def methods(bot: Bot, *names: str) -> list[str]:
    return [c.method for c in bot.api.calls if c.method in names]


# -- the greeting -------------------------------------------------------------------------


def test_suggested_prompts_come_from_titles_written_pieces_first() -> None:
    docs = [
        {"source": "f.md", "title": "CIA World Factbook 2016: China (selected sections: Economy)"},
        {"source": "u.md", "title": "22 U.S.C. Chapter 85 (North Korean Human Rights Act of 2004)"},
        {"source": "a.md", "title": "Why Should the US Talk to North Korea?", "author": "D. DePetris"},
        {"source": "w.md", "title": "Nuclear Suppliers Group (Wikipedia)"},
        {"source": "e.md", "title": "Economy of Iran (Wikipedia, excerpt)"},
        {"source": "n.md", "title": "Economy of North Korea (Wikipedia)"},  # a second "Economy"
        {"source": "x.md", "title": "Nuclear Suppliers Group"},  # the same title once
    ]
    prompts = suggested_prompts(docs)
    assert [p["message"] for p in prompts] == [
        "Why Should the US Talk to North Korea?",
        "What does \u201cEconomy of Iran\u201d say?",
        "What does \u201cNuclear Suppliers Group\u201d say?",
    ]
    assert all(len(p["title"]) <= 70 for p in prompts)
    # Fewer plain titles than prompts: the series and numbered titles fill in.
    assert [p["message"] for p in suggested_prompts(docs[:2] + docs[5:6])] == [
        "What does \u201cEconomy of North Korea\u201d say?",
        "What does \u201c22 U.S.C. Chapter 85\u201d say?",
        "What does \u201cCIA World Factbook 2016: China\u201d say?",
    ]
    assert suggested_prompts([]) == []


def test_thread_started_greets_and_offers_three_prompts_from_the_corpus_titles(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    titles = {d.title for d in open_library(corpus_settings).documents()}
    assert titles == {"Why Talk to Pyongyang", "Factbook: Korea, North", "notes", "Zebra notice <!here>"}
    with running(corpus_settings, fake_api, StreamingSpy(fake_assistant)) as bot:
        event = thread_started()
        assert bot.send(event_callback(event))[0] == 200
        (call,) = bot.api.wait_for("assistant.threads.setSuggestedPrompts")
    thread = event["assistant_thread"]
    assert call.params["channel_id"] == thread["channel_id"] == "D1"
    assert call.params["thread_ts"] == thread["thread_ts"]
    prompts = call.params["prompts"]
    assert len(prompts) == 3
    # The authored article first; every prompt names a title of the corpus.
    assert prompts[0]["message"] == "What does \u201cWhy Talk to Pyongyang\u201d say?"
    assert all(any(f"\u201c{t}\u201d" in p["message"] for t in titles) for p in prompts)
    (greeting,) = fake_api.calls_to("chat.postMessage")
    assert greeting.params["text"] == GREETING and greeting.params["thread_ts"] == thread["thread_ts"]


def test_a_context_change_is_acknowledged_and_nothing_else(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    event = dict(thread_started(), type="assistant_thread_context_changed")
    with running(corpus_settings, fake_api, StreamingSpy(fake_assistant)) as bot:
        assert bot.send(event_callback(event))[0] == 200
        sentinel = bot.ask_and_wait(mention(QUESTION))  # the bot is still there, and did nothing else
    assert "immense failure" in sentinel.params["text"]
    assert not fake_api.calls_to("conversations.replies") and not fake_api.calls_to("chat.update")


# -- answering in an assistant thread -----------------------------------------------------


def test_status_title_and_streamed_answer_with_sources(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    spy = StreamingSpy(fake_assistant)
    root = next_ts()
    with running(corpus_settings, fake_api, spy) as bot:
        ask_in_thread(bot, QUESTION, root)
        wait_done(bot, root)
    (answer,) = spy.answers
    statuses = [c.params["status"] for c in fake_api.calls_to(STATUS)]
    assert statuses == [STATUS_SEARCHING, STATUS_WRITING, ""]
    (title,) = fake_api.calls_to("assistant.threads.setTitle")
    assert (title.params["thread_ts"], title.params["title"]) == (root, QUESTION)
    # Searching is shown before anything is written, writing before the first piece streams,
    # and the status is cleared once the answer (with its buttons) is in.
    order = methods(bot, STATUS, "assistant.threads.setTitle", *STREAM_CALLS)
    assert order[:4] == [STATUS, "assistant.threads.setTitle", STATUS, "chat.startStream"]
    assert order[-2:] == ["chat.stopStream", STATUS]
    start = fake_api.calls_to("chat.startStream")[0]
    assert (start.params["channel"], start.params["thread_ts"]) == ("D1", root)
    assert start.params["recipient_user_id"] == "U1" and start.params["recipient_team_id"] == "T1"
    ts = start.response["ts"]
    assert fake_api.streamed(ts) == escape(answer.answer) and "immense failure" in answer.answer
    (stop,) = fake_api.calls_to("chat.stopStream")
    blocks = stop.params["blocks"]
    assert blocks[-1]["block_id"] == "rag_feedback"
    sources = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    # The byline names author and publication after the title.
    byline = "<https://example.org/article|Why Talk to Pyongyang> \u2014 Jane Writer, The Test Gazette"
    assert f"*[1]* {byline}" in sources
    # Nothing was posted whole, and the 👀 reaction is for mentions and DMs only.
    assert not fake_api.calls_to("chat.postMessage") and not fake_api.calls_to("reactions.add")


def test_streamed_answer_arrives_in_several_pieces(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    spy = StreamingSpy(fake_assistant, words=True)
    root = next_ts()
    with running(corpus_settings, fake_api, spy, interval_s=0.0) as bot:
        ask_in_thread(bot, "What does the zebra migration alert say?", root)
        wait_done(bot, root)
    (answer,) = spy.answers
    pieces = [c for c in fake_api.calls if c.method in STREAM_CALLS and c.params.get("markdown_text")]
    assert len(pieces) >= 2, "the answer should stream in more than one call"
    ts = fake_api.calls_to("chat.startStream")[0].response["ts"]
    streamed = fake_api.streamed(ts)
    assert streamed == escape(answer.answer)
    # A document's Slack markup streams as text, never as a mention or a link.
    assert "<@U999>" in answer.answer and "&lt;@U999&gt;" in streamed
    assert not re.search(r"<[@!#]|<http", streamed)


def test_streaming_calls_are_throttled() -> None:
    calls: list[tuple[str, str]] = []
    now = [0.0]

    class Client:
        def chat_startStream(self, **kw: Any) -> dict[str, str]:  # noqa: N802 - slack_sdk's name
            calls.append(("start", kw["markdown_text"]))
            return {"ts": "9.1"}

        def chat_appendStream(self, **kw: Any) -> None:  # noqa: N802 - slack_sdk's name
            calls.append(("append", kw["markdown_text"]))

    reply = StreamedReply(Client(), "D1", "1.0", interval_s=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    for t, text in [(0.0, "a "), (0.2, "b "), (0.9, "c "), (1.1, "d "), (1.5, "e ")]:
        now[0] = t
        reply.add(text)
    assert calls == [("start", "a "), ("append", "b c d ")]
    assert reply.pending == "e "  # sent with the end of the answer


class RecordingClient:
    """Just the Web API methods a StreamedReply calls, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _record(self, method: str, kw: dict[str, Any]) -> dict[str, str]:
        self.calls.append((method, kw))
        return {"ts": "9.1"}

    def chat_startStream(self, **kw: Any) -> dict[str, str]:  # noqa: N802 - slack_sdk's name
        return self._record("start", kw)

    def chat_appendStream(self, **kw: Any) -> dict[str, str]:  # noqa: N802 - slack_sdk's name
        return self._record("append", kw)

    def chat_stopStream(self, **kw: Any) -> dict[str, str]:  # noqa: N802 - slack_sdk's name
        return self._record("stop", kw)

    def chat_update(self, **kw: Any) -> dict[str, str]:
        return self._record("update", kw)

    def chat_postMessage(self, **kw: Any) -> dict[str, str]:  # noqa: N802 - slack_sdk's name
        return self._record("post", kw)


def test_an_answer_unlike_what_was_streamed_replaces_it(fake_assistant: Assistant) -> None:
    answer = fake_assistant.ask(QUESTION)
    client = RecordingClient()
    reply = StreamedReply(client, "D1", "1.0", interval_s=0.0)  # type: ignore[arg-type]
    reply.add("A first draft")
    reply.finish(answer, feedback_id="f1")
    assert [m for m, _ in client.calls] == ["start", "stop", "update"]
    assert client.calls[1][1].get("blocks") is None  # the stream just ends...
    update = client.calls[2][1]  # ...and the message becomes the whole rendered answer
    assert update["ts"] == "9.1" and "immense failure" in update["text"]
    assert update["blocks"][-1]["block_id"] == "rag_feedback"


def test_a_long_answer_streams_in_pieces_slack_accepts(fake_assistant: Assistant) -> None:
    answer = fake_assistant.ask(QUESTION)
    answer.answer = "word & " * 3000  # 21,000 characters, 33,000 escaped
    client = RecordingClient()
    reply = StreamedReply(client, "D1", "1.0", interval_s=0.0)  # type: ignore[arg-type]
    reply.add("word & ")
    reply.finish(answer, feedback_id=None)
    texts = [kw.get("markdown_text") or "" for _, kw in client.calls]
    assert [m for m, _ in client.calls] == ["start", "append", "append", "stop"]
    assert all(len(t) <= 12_000 for t in texts)
    assert "".join(texts) == escape(answer.answer)


def test_follow_up_in_the_same_thread_keeps_its_title(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    spy = StreamingSpy(fake_assistant)
    root = next_ts()
    first = {"type": "message", "user": "U1", "text": QUESTION, "ts": next_ts(), "thread_ts": root}
    with running(corpus_settings, fake_api, spy) as bot:
        fake_api.threads[("D1", root)] = [first]
        ask_in_thread(bot, "Who wrote it?", root)
        wait_done(bot, root)
    assert not fake_api.calls_to("assistant.threads.setTitle")
    assert spy.asked[0][1][0] == {"role": "user", "content": QUESTION}


def test_status_is_cleared_when_answering_fails(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    spy = StreamingSpy(fake_assistant, fail_after=2, words=True)
    root = next_ts()
    with running(corpus_settings, fake_api, spy) as bot:
        ask_in_thread(bot, QUESTION, root)
        wait_done(bot, root)
    statuses = [c.params["status"] for c in fake_api.calls_to(STATUS)]
    assert statuses[0] == STATUS_SEARCHING and statuses[-1] == ""
    (error,) = fake_api.calls_to("chat.postMessage")
    assert error.params["text"] == ERROR_TEXT and error.params["thread_ts"] == root
    assert "fell over" not in str(error.params)
    # The stream that had begun is closed, before the notice; the status cleared last.
    assert methods(bot, "chat.stopStream", "chat.postMessage", STATUS)[-3:] == [
        "chat.stopStream",
        "chat.postMessage",
        STATUS,
    ]


def test_status_is_cleared_when_the_question_is_refused_as_invalid(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    root = next_ts()
    with running(corpus_settings, fake_api, StreamingSpy(fake_assistant)) as bot:
        ask_in_thread(bot, "   ", root)
        wait_done(bot, root)
    assert fake_api.calls_to("chat.postMessage")[0].params["text"] == "Please type a question."
    assert not fake_api.calls_to("assistant.threads.setTitle")


def test_without_streaming_one_message_is_edited(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    spy = StreamingSpy(fake_assistant)
    root = next_ts()
    with running(corpus_settings, fake_api, spy) as bot:
        fake_api.fail["chat.startStream"] = "unknown_method"
        ask_in_thread(bot, QUESTION, root)
        wait_done(bot, root)
    (answer,) = spy.answers
    (posted,) = fake_api.calls_to("chat.postMessage")
    updates = fake_api.calls_to("chat.update")
    assert updates and all(u.params["ts"] == posted.response["ts"] for u in updates)
    assert updates[-1].params["blocks"][-1]["block_id"] == "rag_feedback"
    assert "immense failure" in updates[-1].params["text"]
    assert not fake_api.calls_to("chat.appendStream") and not fake_api.calls_to("chat.stopStream")
    assert [c.params["status"] for c in fake_api.calls_to(STATUS)][-1] == ""
    assert answer.answer


def test_retried_delivery_in_an_assistant_thread_is_answered_once(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    spy = StreamingSpy(fake_assistant)
    root = next_ts()
    with running(corpus_settings, fake_api, spy) as bot:
        event = direct_message(QUESTION, thread_ts=root)
        payload = event_callback(event)
        assert bot.send(payload)[0] == 200
        wait_done(bot, root)
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        assert bot.send(payload, headers=retry)[0] == 200
        sentinel = next_ts()
        ask_in_thread(bot, "What is North Korea's GDP?", sentinel)
        wait_done(bot, sentinel)
    assert len(spy.asked) == 2
    assert len([c for c in fake_api.calls_to("chat.startStream") if c.params["thread_ts"] == root]) == 1


def test_dm_thread_outside_the_assistant_gets_the_reaction_and_a_whole_answer(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    spy = StreamingSpy(fake_assistant)
    root = next_ts()
    with running(corpus_settings, fake_api, spy) as bot:
        fake_api.fail[STATUS] = "not_allowed"
        ask_in_thread(bot, QUESTION, root)
        fake_api.wait_for("reactions.remove")
    (reply,) = fake_api.calls_to("chat.postMessage")
    assert reply.params["thread_ts"] == root and reply.params["blocks"][-1]["block_id"] == "rag_feedback"
    assert not fake_api.calls_to("chat.startStream") and len(fake_api.calls_to(STATUS)) == 1


def test_mentions_keep_the_reaction_and_no_status(
    corpus_settings: Settings, fake_api: FakeSlackAPI, fake_assistant: Assistant
) -> None:
    with running(corpus_settings, fake_api, StreamingSpy(fake_assistant)) as bot:
        reply = bot.ask_and_wait(mention(QUESTION))
        fake_api.wait_for("reactions.remove")
    assert "immense failure" in reply.params["text"]
    assert not fake_api.calls_to(STATUS) and not fake_api.calls_to("chat.startStream")
    assert methods(bot, "reactions.add", "chat.postMessage", "reactions.remove") == [
        "reactions.add",
        "chat.postMessage",
        "reactions.remove",
    ]
