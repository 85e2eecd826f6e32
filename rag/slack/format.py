"""Slack rendering: Markdown -> mrkdwn, answers -> Block Kit messages, Slack text -> plain text.

Everything that comes from a document or a model is escaped (``&``, ``<``, ``>``), so a passage
that contains ``<!channel>`` or ``<http://evil|click>`` shows up as text, never as a mention or a
link; the only links in a reply are the ones built here from a source's ``http(s)`` URL.

>>> markdown_to_mrkdwn("**Talks** are a sign of strength [1] & <!here>.")
'*Talks* are a sign of strength [1] &amp; &lt;!here&gt;.'
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

    from rag.answering import Answer, Citation, Passage

# Slack's documented limits (https://docs.slack.dev/reference/block-kit/blocks).
SECTION_TEXT_LIMIT = 3000
BLOCKS_PER_MESSAGE = 50
MESSAGE_TEXT_LIMIT = 40_000
BUTTON_VALUE_LIMIT = 2000
QUOTE_CHARS = 280
CLOSEST = 3  # passages listed beside a refusal, as in the web chat

FEEDBACK_BLOCK_ID = "rag_feedback"
FEEDBACK_UP = "rag_feedback_up"
FEEDBACK_DOWN = "rag_feedback_down"

_LINK_SPAN = re.compile(r"<[^<>\n]*>")


def escape(text: str) -> str:
    """Escape the three characters Slack treats as markup.

    >>> escape("<!channel> & <http://evil|x>")
    '&lt;!channel&gt; &amp; &lt;http://evil|x&gt;'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe_url(url: str | None) -> str | None:
    """An ``http(s)`` URL made safe inside ``<url|text>`` (no ``|``, ``>``, spaces), else None."""
    if not url or not url.startswith(("http://", "https://")):
        return None
    for ch, code in (("|", "%7C"), (" ", "%20"), ("<", "%3C"), (">", "%3E"), ("\n", ""), ("\r", "")):
        url = url.replace(ch, code)
    return url.replace("&", "&amp;")


def link(url: str | None, text: str) -> str:
    """``<url|text>`` when the URL is usable, else the escaped text alone."""
    target = safe_url(url)
    label = escape(text).replace("|", "¦")  # a '|' would end the label early
    return f"<{target}|{label}>" if target else label


@cache
def _parser() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # Raw HTML, autolinks and reference definitions off: "<b>", "<http://x|y>" and "[1]: url" in
    # an answer are text to show (often quoted from a document), not markup to trust; the only
    # links we render are explicit [label](http...) ones.
    md = MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"])
    return md.disable(["autolink", "reference", "html_inline", "html_block"])


def markdown_to_mrkdwn(markdown: str) -> str:
    """Convert Markdown (what answerers write) to Slack mrkdwn, escaping all text.

    >>> markdown_to_mrkdwn("# Trade\\n\\n- China: *70%* [2]\\n- see [the CIA](https://cia.gov/x)")
    '*Trade*\\n\\n• China: _70%_ [2]\\n• see <https://cia.gov/x|the CIA>'
    """
    if not markdown.strip():
        return ""
    tokens = _parser().parse(markdown)
    return _render_blocks(tokens).strip()


def _render_blocks(tokens: Sequence[Token]) -> str:
    out: list[str] = []
    lists: list[list[int]] = []  # one [next number] per open list; 0 for bullets
    quote_depth = 0
    item_prefix = ""
    heading = False
    cell: list[str] | None = None
    row: list[str] = []

    def emit(text: str) -> None:
        nonlocal item_prefix
        indent = "    " * max(len(lists) - 1, 0)
        hang = " " * len(item_prefix)
        lines = text.split("\n")
        lines = [indent + item_prefix + lines[0]] + [indent + hang + line for line in lines[1:]]
        item_prefix = ""
        out.append("\n".join("> " * quote_depth + line for line in lines))

    for tok in tokens:
        t = tok.type
        if t == "inline":
            text = _render_inline(tok.children or [])
            if cell is not None:
                cell.append(text)
            else:
                emit(f"*{text}*" if heading and text else text)
        elif t in ("bullet_list_open", "ordered_list_open"):
            lists.append([int(tok.attrGet("start") or 1) if t == "ordered_list_open" else 0])
        elif t in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
            if not lists:
                out.append("")
        elif t == "list_item_open":
            if lists and lists[-1][0]:
                item_prefix = f"{lists[-1][0]}. "
                lists[-1][0] += 1
            else:
                item_prefix = "• "
        elif t == "blockquote_open":
            quote_depth += 1
        elif t == "blockquote_close":
            quote_depth -= 1
        elif t == "heading_open":
            heading = True
        elif t == "heading_close":
            heading = False
            out.append("")
        elif t == "paragraph_close" and not tok.hidden:
            out.append("")
        elif t in ("fence", "code_block"):
            emit("```\n" + escape(tok.content.rstrip("\n")) + "\n```")
            out.append("")
        elif t == "hr":
            emit("──────────")
            out.append("")
        elif t in ("th_open", "td_open"):
            cell = []
        elif t in ("th_close", "td_close"):
            row.append("".join(cell or []))
            cell = None
        elif t == "tr_close":
            emit(" | ".join(row))
            row = []
        elif t == "table_close":
            out.append("")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out))


def _render_inline(children: Sequence[Token]) -> str:
    parts: list[str] = []
    link_stack: list[tuple[str | None, int]] = []
    for tok in children:
        t = tok.type
        if t == "text":
            parts.append(escape(tok.content))
        elif t in ("strong_open", "strong_close"):
            parts.append("*")
        elif t in ("em_open", "em_close"):
            parts.append("_")
        elif t in ("s_open", "s_close"):
            parts.append("~")
        elif t == "code_inline":
            parts.append("`" + escape(tok.content) + "`")
        elif t == "softbreak":
            parts.append("\n")
        elif t == "hardbreak":
            parts.append("\n")
        elif t == "link_open":
            link_stack.append((str(tok.attrGet("href") or ""), len(parts)))
        elif t == "link_close" and link_stack:
            href, start = link_stack.pop()
            label = "".join(parts[start:])
            del parts[start:]
            target = safe_url(href)
            parts.append(f"<{target}|{label.replace('|', '¦')}>" if target else label)
        elif t == "image":
            target = safe_url(str(tok.attrGet("src") or ""))
            alt = escape(tok.content or "image")
            parts.append(f"<{target}|{alt}>" if target else alt)
        elif t == "html_inline":  # only reachable if html is ever enabled: show it as text
            parts.append(escape(tok.content))
    return "".join(parts)


def split_text(text: str, limit: int = SECTION_TEXT_LIMIT) -> list[str]:
    """Split mrkdwn into pieces of at most ``limit`` characters, at paragraph, line or word
    breaks, never inside a ``<url|label>`` link or an ``&amp;`` entity.

    >>> split_text("one two three", limit=8)
    ['one two', 'three']
    """
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _break_point(rest, limit)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _break_point(text: str, limit: int) -> int:
    spans = [(m.start(), m.end()) for m in _LINK_SPAN.finditer(text, 0, limit + 1)]

    def inside(pos: int) -> bool:
        return any(a < pos < b for a, b in spans)

    window = text[: limit + 1]
    for sep in ("\n\n", "\n", ". ", " "):
        pos = window.rfind(sep)
        while pos > 0:
            cut = pos + len(sep)
            if cut <= limit and not inside(pos):
                return cut
            pos = window.rfind(sep, 0, pos)
    # No break anywhere: cut hard, but not through an entity such as "&amp;".
    cut = limit
    amp = window.rfind("&", max(0, limit - 5), limit)
    if amp > 0 and ";" not in window[amp:limit]:
        cut = amp
    return cut


def shorten(text: str, limit: int) -> str:
    """Collapse whitespace and cut at a word boundary with an ellipsis.

    >>> shorten("a  long\\n sentence here", 12)
    'a long…'
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 3 else limit - 1].rstrip(" ,;:") + "…"


@dataclass
class SlackMessage:
    """One ``chat.postMessage`` payload: fallback ``text`` and ``blocks``."""

    text: str
    blocks: list[dict[str, Any]]


def _section(text: str) -> dict[str, Any]:
    # verbatim: Slack must not auto-link or parse mentions in text we did not write.
    return {"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}


def byline(author: str, publication: str) -> str:
    """The byline after a source's title: " — author, publication" (either may be missing),
    escaped; "" when neither is known.

    >>> byline("Daniel DePetris", "The Diplomat")
    ' — Daniel DePetris, The Diplomat'
    """
    named = ", ".join(shorten(x, 120) for x in (author, publication) if x.strip())
    return f" \u2014 {escape(named)}" if named else ""


def source_line(citation: Citation) -> str:
    """``*[n]* <url|title> — author, publication · section`` then the quote on a ``>`` line,
    all escaped: the byline tells a reader an opinion piece from a reference work."""
    p = citation.passage
    title = shorten(p.title or p.source or "source", 200)
    by = byline(p.author, p.publication)
    line = f"*[{citation.n}]* {_passage_label(p, title)}"
    if citation.quote:
        line += "\n> " + escape(shorten(citation.quote, QUOTE_CHARS))
    if len(line) > SECTION_TEXT_LIMIT:  # only a pathological URL gets here: drop the link
        line = f"*[{citation.n}]* {escape(title)}{by}"
    return line


def _passage_label(p: Passage, title: str) -> str:
    """``<url|title> — author, publication · section``, escaped: a source or a closest passage."""
    label = f"{link(p.url, title)}{byline(p.author, p.publication)}"
    if p.section and p.section != p.title:
        label += " · _" + escape(shorten(p.section, 200)) + "_"
    return label


def closest_line(p: Passage) -> str:
    """``• <url|title> — author, publication · section``, escaped, for a passage near a refusal."""
    title = shorten(p.title or p.source or "source", 200)
    line = f"\u2022 {_passage_label(p, title)}"
    # Three lines must fit a context element's 3,000 characters: a pathological URL loses its link.
    return line if len(line) <= 900 else f"\u2022 {escape(title)}"


def feedback_block(feedback_id: str, question: str) -> dict[str, Any]:
    """The 👍 / 👎 buttons; ``value`` carries the key of the stored answer and the question."""
    value = json.dumps({"id": feedback_id, "q": question[:1000]}, ensure_ascii=False)
    if len(value) > BUTTON_VALUE_LIMIT:
        value = json.dumps({"id": feedback_id, "q": ""})
    return {
        "type": "actions",
        "block_id": FEEDBACK_BLOCK_ID,
        "elements": [
            {
                "type": "button",
                "action_id": FEEDBACK_UP,
                "text": {"type": "plain_text", "text": "👍 Helpful", "emoji": True},
                "value": value,
            },
            {
                "type": "button",
                "action_id": FEEDBACK_DOWN,
                "text": {"type": "plain_text", "text": "👎 Not helpful", "emoji": True},
                "value": value,
            },
        ],
    }


def render_answer(answer: Answer, feedback_id: str | None = None) -> list[SlackMessage]:
    """The reply to post, usually one message: answer sections, a Sources section, a note,
    the feedback buttons. An answer too long for one message's 50 blocks continues in more.
    A refusal is its one sentence, then (as in the web chat) the closest passages, marked as not
    holding the answer.
    """
    body = answer_mrkdwn(answer)
    blocks = [_section(piece) for piece in split_text(body)] + after_answer(answer, feedback_id)
    fallback = body if len(body) <= MESSAGE_TEXT_LIMIT - 100 else shorten(body, MESSAGE_TEXT_LIMIT - 100)
    chunks = [blocks[i : i + BLOCKS_PER_MESSAGE] for i in range(0, len(blocks), BLOCKS_PER_MESSAGE)]
    messages = [SlackMessage(_blocks_text(chunk), chunk) for chunk in chunks[:-1]]
    # The last message (sources, buttons) carries the whole answer: it is what history reads.
    messages.append(SlackMessage(fallback, chunks[-1]))
    return messages


def answer_mrkdwn(answer: Answer) -> str:
    """The answer's text as escaped mrkdwn."""
    return markdown_to_mrkdwn(answer.answer) or escape(answer.answer)


def after_answer(answer: Answer, feedback_id: str | None = None) -> list[dict[str, Any]]:
    """What follows the answer's text: the Sources, flagged sentences, the note, the feedback
    buttons (a streamed answer ends with these blocks)."""
    blocks: list[dict[str, Any]] = []
    if not answer.refused and answer.citations:
        blocks.append({"type": "divider"})
        entries = [source_line(c) for c in answer.citations]
        group = "*Sources*"
        for entry in entries:
            if len(group) + 1 + len(entry) > SECTION_TEXT_LIMIT:
                blocks.append(_section(group))
                group = entry
            else:
                group += "\n" + entry
        blocks.append(_section(group))
    if answer.refused and answer.retrieved:
        # The refusal says the documents do not answer; the nearest passages let a reader check
        # that, or find what is close, instead of taking it on trust.
        lines = "\n".join(closest_line(p) for p in answer.retrieved[:CLOSEST])
        text = f"_Not answered; the closest passages:_\n{lines}"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text, "verbatim": True}]})
    unsupported = [s.text for s in answer.sentences if s.supported is False]
    if unsupported and not answer.refused:
        # Slack text cannot carry an inline flag safely through mrkdwn conversion: list them.
        flagged = "\n".join(f"\u2022 {escape(shorten(text, 300))}" for text in unsupported)
        warning = f":warning: Not supported by the cited passage:\n{flagged}"
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": warning, "verbatim": True}]}
        )
    if answer.note:
        note = escape(shorten(answer.note, 2000))
        note_text = {"type": "mrkdwn", "text": f"_{note}_", "verbatim": True}
        blocks.append({"type": "context", "elements": [note_text]})
    if feedback_id is not None:
        blocks.append(feedback_block(feedback_id, answer.question))
    return blocks


def _blocks_text(blocks: Sequence[dict[str, Any]]) -> str:
    return "\n\n".join(b["text"]["text"] for b in blocks if b.get("type") == "section")


def mrkdwn_message(mrkdwn: str) -> SlackMessage:
    """Already-escaped mrkdwn (at most one section's worth) as a message."""
    text = shorten(mrkdwn, SECTION_TEXT_LIMIT) if len(mrkdwn) > SECTION_TEXT_LIMIT else mrkdwn
    return SlackMessage(text, [_section(text)])


def plain_message(text: str) -> SlackMessage:
    """A short notice (error, rate limit) as one escaped section."""
    safe = escape(text)
    return SlackMessage(safe, [_section(safe)])


_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_SLACK_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def slack_to_plain(text: str, strip_user: str | None = None) -> str:
    """Slack message text -> what the user typed: the bot's mention removed, other mentions
    and links to their labels, entities unescaped.

    >>> slack_to_plain("<@UBOT> what about <https://x.org|this> &amp; <#C1|general>?", "UBOT")
    'what about this & #general?'
    """

    def mention(m: re.Match[str]) -> str:
        return "" if m.group(1) == strip_user else f"@{m.group(1)}"

    def other(m: re.Match[str]) -> str:
        target, label = m.group(1), m.group(2)
        if label:
            return ("#" if target.startswith("#") else "") + label
        if target.startswith("!"):
            return "@" + target[1:].split("^")[0]
        return target

    text = _MENTION.sub(mention, text)
    text = _SLACK_LINK.sub(other, text)
    return " ".join(html.unescape(text).split())
