"""Slack's assistant threads (the AI app's split view and tab): the greeting's suggested
prompts, the thread's title, and an answer written into the thread as it streams.

``StreamedReply`` uses Slack's chat streaming calls (``chat.startStream``, ``chat.appendStream``,
``chat.stopStream``) and falls back to one message edited with ``chat.update`` when Slack
refuses to start a stream; either way at most one call per ``interval_s`` while text arrives,
then the sources and the feedback buttons at the end::

    reply = StreamedReply(client, channel, thread_ts, user="U1", team="T1")
    for event in assistant.stream(question, history):
        reply.add(event.text) if isinstance(event, Delta) else reply.finish(event, feedback_id)

>>> [p["message"] for p in suggested_prompts([{"title": "Why Talk?", "author": "A"},
...                                           {"title": "Nuclear Suppliers Group (Wikipedia)"}])]
['Why Talk?', 'What does “Nuclear Suppliers Group” say?']
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from rag.slack.format import (
    SlackMessage,
    after_answer,
    escape,
    markdown_to_mrkdwn,
    mrkdwn_message,
    render_answer,
    shorten,
)

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from rag.answering import Answer

log = logging.getLogger(__name__)

GREETING = (
    "Hi! I answer questions from the documents I have been given, and I cite them."
    " Ask away, or try one of these:"
)
PROMPTS_TITLE = "Ask about the documents:"
STATUS_SEARCHING = "is searching the documents…"
STATUS_WRITING = "is writing…"
PROMPT_LABEL_CHARS = 70  # what the prompt's button shows; the question sent is the whole title
TITLE_CHARS = 80
STREAM_TEXT_LIMIT = 12_000  # chat.*Stream's markdown_text limit per call
_PARENTHETICAL = re.compile(r"\s*\([^()]*\)")
_DIGIT = re.compile(r"\d")


def suggested_prompts(documents: Sequence[dict[str, str]], count: int = 3) -> list[dict[str, str]]:
    """``count`` prompts from the corpus's own titles: written pieces (with an author) first,
    then titles that are questions, then the shortest plain titles (no statute or edition
    numbers), one per first word so they are not three of a series. A title that is a question
    is asked as it is; another becomes "What does “title” say?", parentheticals such as
    "(Wikipedia)" or "(selected sections: ...)" dropped."""
    named = []
    for doc in documents:
        title = " ".join(_PARENTHETICAL.sub("", doc.get("title") or "").split()).strip(" ,;:")
        if title:
            named.append((title, bool(doc.get("author"))))
    named.sort(
        key=lambda t: (not t[1], not t[0].endswith("?"), _DIGIT.search(t[0]) is not None, len(t[0]), t[0])
    )
    chosen: list[str] = []
    later: list[str] = []
    firsts: set[str] = set()
    for title, _ in named:
        first = title.split()[0].lower()
        if title.lower() in {c.lower() for c in chosen + later}:
            continue
        (later if first in firsts else chosen).append(title)
        firsts.add(first)
    prompts = []
    for title in (chosen + later)[:count]:
        message = title if title.endswith("?") else f"What does \u201c{title}\u201d say?"
        prompts.append({"title": shorten(message, PROMPT_LABEL_CHARS), "message": message})
    return prompts


def thread_title(question: str) -> str:
    """The assistant thread's title: the first question, shortened."""
    return shorten(question, TITLE_CHARS)


class StreamedReply:
    """One answer written into a thread while it is produced (see the module's docstring).

    Streamed text is escaped like every other text we post (``&``, ``<``, ``>``), so a
    document's ``<!channel>`` stays text. When the finished answer is not what was streamed
    (the answerer changed its mind, or the answer needs more than one message), the message
    is replaced by the full rendering.
    """

    def __init__(
        self,
        client: WebClient,
        channel: str,
        thread_ts: str,
        *,
        user: str | None = None,
        team: str | None = None,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.channel, self.thread_ts = client, channel, thread_ts
        self.user, self.team = user, team
        self.interval_s, self.clock = interval_s, clock
        self.mode: Literal["stream", "update"] = "stream"
        self.ts: str | None = None  # the reply's message, once it exists
        self.sent = ""  # the answer's markdown Slack has been sent so far
        self.pending = ""
        self.stopped = False
        self._last = -float("inf")

    def add(self, text: str) -> None:
        """More answer text; sent when ``interval_s`` has passed since the last call."""
        self.pending += text
        if self.clock() - self._last >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        if self.mode == "stream":
            from slack_sdk.errors import SlackApiError

            try:
                for piece in _pieces(escape(self.pending)):
                    if self.ts is None:
                        resp = self.client.chat_startStream(
                            channel=self.channel,
                            thread_ts=self.thread_ts,
                            markdown_text=piece,
                            recipient_user_id=self.user,
                            recipient_team_id=self.team,
                        )
                        self.ts = str(resp["ts"])
                    else:
                        self.client.chat_appendStream(channel=self.channel, ts=self.ts, markdown_text=piece)
            except SlackApiError as exc:
                if self.ts is not None:
                    raise
                # An older workspace, or one without the feature: edit one message instead.
                error = exc.response.get("error")
                log.info("chat.startStream refused (%s): answering with chat.update", error)
                self.mode = "update"
        if self.mode == "update":
            shown = markdown_to_mrkdwn(self.sent + self.pending) or escape(self.sent + self.pending)
            self.ts = self._post_or_update(mrkdwn_message(shown))
        self.sent += self.pending
        self.pending = ""
        self._last = self.clock()

    def finish(self, answer: Answer, feedback_id: str | None) -> None:
        """Complete the reply: the rest of the answer, its sources and the feedback buttons."""
        messages = render_answer(answer, feedback_id=feedback_id)
        if self.ts is None:  # nothing streamed (a refusal, an answer without pieces)
            for message in messages:
                self._post(message)
            return
        if self.mode == "stream":
            rest = answer.answer[len(self.sent) :] if answer.answer.startswith(self.sent) else None
            streamed_whole = rest is not None and len(messages) == 1
            pieces = _pieces(escape(rest)) if streamed_whole and rest else []
            for piece in pieces[:-1]:
                self.client.chat_appendStream(channel=self.channel, ts=self.ts, markdown_text=piece)
            self.client.chat_stopStream(
                channel=self.channel,
                ts=self.ts,
                markdown_text=pieces[-1] if pieces else None,
                blocks=after_answer(answer, feedback_id) if streamed_whole else None,
            )
            self.stopped = True
            if streamed_whole:
                return
        # Not what was streamed, or longer than one message: show the full rendering.
        self._post_or_update(messages[0])
        for message in messages[1:]:
            self._post(message)

    def abandon(self) -> None:
        """Answering failed: end an open stream so the thread does not show it as still typing."""
        if self.mode == "stream" and self.ts is not None and not self.stopped:
            try:
                self.client.chat_stopStream(channel=self.channel, ts=self.ts)
                self.stopped = True
            except Exception as exc:  # noqa: BLE001 - the error notice still gets posted
                log.warning("could not stop the answer's stream: %s", exc)

    def _post(self, message: SlackMessage) -> str:
        resp = self.client.chat_postMessage(
            channel=self.channel,
            thread_ts=self.thread_ts,
            text=message.text,
            blocks=message.blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(resp["ts"])

    def _post_or_update(self, message: SlackMessage) -> str:
        if self.ts is None:
            return self._post(message)
        self.client.chat_update(channel=self.channel, ts=self.ts, text=message.text, blocks=message.blocks)
        return self.ts


def _pieces(text: str, limit: int = STREAM_TEXT_LIMIT) -> list[str]:
    """``text`` in pieces a streaming call accepts, never cutting an ``&amp;``-style entity.

    >>> _pieces("a &amp; b", limit=5)
    ['a ', '&amp;', ' b']
    """
    pieces: list[str] = []
    while len(text) > limit:
        amp = text.rfind("&", max(0, limit - 5), limit)
        cut = amp if amp > 0 and ";" not in text[amp:limit] else limit
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text] if text else pieces


def set_status(client: WebClient, channel: str, thread_ts: str, status: str) -> bool:
    """``assistant.threads.setStatus`` ("" clears it); False when Slack refused (not an
    assistant thread, a missing scope), so the caller can signal work another way."""
    try:
        client.assistant_threads_setStatus(channel_id=channel, thread_ts=thread_ts, status=status)
        return True
    except Exception as exc:  # noqa: BLE001 - a status is a courtesy, never worth the answer
        log.info("assistant.threads.setStatus failed: %s", exc)
        return False


def set_title(client: WebClient, channel: str, thread_ts: str, question: str) -> None:
    try:
        title = thread_title(question)
        client.assistant_threads_setTitle(channel_id=channel, thread_ts=thread_ts, title=title)
    except Exception as exc:  # noqa: BLE001 - an untitled thread still gets its answer
        log.warning("assistant.threads.setTitle failed: %s", exc)


def greet(client: WebClient, thread: dict[str, Any], documents: Sequence[dict[str, str]]) -> None:
    """A new assistant thread: say hello and offer three questions about the corpus."""
    channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
    if not channel or not thread_ts:
        return
    client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=GREETING)
    prompts = suggested_prompts(documents)
    if prompts:
        client.assistant_threads_setSuggestedPrompts(
            channel_id=channel, thread_ts=thread_ts, prompts=prompts, title=PROMPTS_TITLE
        )
