"""Rendering for the web chat: answers as Markdown with linked ``[n]`` markers, the sources panel
as HTML, and the status line.

Everything that comes from a document (passage text, titles, sections, quotes, answer sentences)
is escaped here, in one place, so HTML or script inside a document is shown as text and never
runs::

    >>> escape_markdown("<script>**x**")
    '\\\\<script\\\\>\\\\*\\\\*x\\\\*\\\\*'
    >>> highlight("One. Two <b>bold</b>. Three.", "Two <b>bold</b>.")
    'One. <mark>Two &lt;b&gt;bold&lt;/b&gt;.</mark> Three.'

Answer ``t``'s marker ``[n]`` links to ``#src-t-n``, the id of that citation in the sources panel;
each citation links to its document in the documents view (``document_link``), whose table and
passages are rendered here too (``documents_html``, ``document_html``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rag.answering import MARKER

# CommonMark lets any ASCII punctuation be backslash-escaped; escaping all of it means no
# document text can form a link, an HTML tag, an emphasis, a list or (with `$`) a formula.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&$:\"'=/])")
# Answers keep the documents' **bold** and *italics*: emphasis cannot link, embed or run anything.
_MD_SPECIAL_BUT_EMPHASIS = re.compile(r"([\\`{}\[\]()<>#+\-.!|~&$:\"'=/])")


def escape_markdown(text: str, *, keep_emphasis: bool = False) -> str:
    """Make ``text`` render literally in Markdown (and so never as HTML)."""
    pattern = _MD_SPECIAL_BUT_EMPHASIS if keep_emphasis else _MD_SPECIAL
    return pattern.sub(r"\\\1", text)


def source_id(turn: int, n: int) -> str:
    """The element id of citation ``n`` of answer ``turn`` in the sources panel."""
    return f"src-{turn}-{n}"


UNSUPPORTED_MARK = "\u2063"  # invisible; survives escaping, replaced by the visible flag
UNSUPPORTED_FLAG = " \u26a0\ufe0f"
UNSUPPORTED_NOTE = "\u26a0\ufe0f marks a sentence that its cited passage does not support."


def answer_markdown(text: str, turn: int, note: str | None = None, unsupported: Sequence[str] = ()) -> str:
    """An answer (or the part streamed so far) as Markdown: text escaped, ``[n]`` linked, and
    each sentence in ``unsupported`` (the chain's verification said no) flagged with a warning.

    >>> answer_markdown("Talks are a sign of strength. [2]", turn=0)
    'Talks are a sign of strength\\\\. [\\\\[2\\\\]](#src-0-2)'
    """
    for sentence in unsupported:
        at = text.find(sentence)
        if sentence and at >= 0:
            end = at + len(sentence)
            text = text[:end] + UNSUPPORTED_MARK + text[end:]
    out: list[str] = []
    last = 0
    for match in MARKER.finditer(text):
        out.append(escape_markdown(text[last : match.start()], keep_emphasis=True))
        numbers = [int(part) for part in match.group(1).split(",")]
        out.append(" " + "".join(f"[\\[{n}\\]](#{source_id(turn, n)})" for n in numbers))
        last = match.end()
    out.append(escape_markdown(text[last:], keep_emphasis=True))
    body = "".join(out).strip()
    if UNSUPPORTED_MARK in body:
        body = body.replace(UNSUPPORTED_MARK, UNSUPPORTED_FLAG) + f"\n\n*{UNSUPPORTED_NOTE}*"
    if note:
        body += f"\n\n*Note: {escape_markdown(note)}*"
    return body


def highlight(text: str, quote: str) -> str:
    """``text`` as HTML with ``quote`` wrapped in ``<mark>``; both escaped.

    The quote is looked up exactly, then ignoring differences in white space; when it cannot be
    found the text is returned escaped without a highlight.
    """
    span = _find(text, quote)
    if span is None:
        return html.escape(text)
    start, end = span
    return (
        html.escape(text[:start])
        + "<mark>"
        + html.escape(text[start:end])
        + "</mark>"
        + html.escape(text[end:])
    )


def _find(text: str, quote: str) -> tuple[int, int] | None:
    quote = quote.strip()
    if not quote:
        return None
    start = text.find(quote)
    if start >= 0:
        return start, start + len(quote)
    pattern = r"\s+".join(re.escape(word) for word in quote.split())
    match = re.search(pattern, text)
    return (match.start(), match.end()) if match else None


def _citation_html(turn: int, citation: Mapping[str, Any], open_: bool) -> str:
    n = int(citation["n"])
    title = html.escape(str(citation.get("title") or citation.get("source") or "Untitled"))
    section = str(citation.get("section") or "")
    url = citation.get("url")
    where = f'<span class="src-section">{html.escape(section)}</span>' if section else ""
    # Who wrote it and where: an opinion piece reads differently from a reference work.
    named = ", ".join(x for x in (str(citation.get(k) or "").strip() for k in ("author", "publication")) if x)
    byline = f'<span class="src-by"> \u2014 {html.escape(named)}</span>' if named else ""
    link = ""
    # Only http(s) links: a document cannot smuggle a javascript: URL into the page.
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        link = (
            f'<a class="src-url" href="{html.escape(url, quote=True)}" target="_blank"'
            f' rel="noopener noreferrer">{html.escape(url)}</a>'
        )
    source = html.escape(str(citation.get("source") or ""))
    passage = highlight(str(citation.get("text") or ""), str(citation.get("quote") or ""))
    return (
        f'<details class="src" id="{source_id(turn, n)}"{" open" if open_ else ""}>'
        f'<summary><span class="src-n">[{n}]</span> <span class="src-title">{title}</span>{byline}'
        f"{' › ' + where if where else ''}</summary>"
        f'<div class="src-body"><div class="src-meta"><code>{source}</code> {link}'
        f"{document_link(str(citation.get('source') or ''), str(citation.get('chunk_id') or ''))}</div>"
        f'<div class="src-text">{passage}</div></div></details>'
    )


CLOSEST = 3  # passages shown beside a refusal


def _closest_html(turn: int, i: int, passage: Mapping[str, Any]) -> str:
    title = html.escape(str(passage.get("title") or passage.get("source") or "Untitled"))
    section = str(passage.get("section") or "")
    where = f' › <span class="src-section">{html.escape(section)}</span>' if section else ""
    source = str(passage.get("source") or "")
    return (
        f'<details class="src src-closest" id="near-{turn}-{i + 1}">'
        f'<summary><span class="src-title">{title}</span>{where}</summary>'
        f'<div class="src-body"><div class="src-meta"><code>{html.escape(source)}</code> '
        f"{document_link(source, str(passage.get('chunk_id') or ''))}</div>"
        f'<div class="src-text">{html.escape(str(passage.get("text") or ""))}</div></div></details>'
    )


def document_link(source: str, chunk_id: str = "", label: str = "in Documents") -> str:
    """A link that opens document ``source`` in the documents view (at passage ``chunk_id``);
    the page's script reads the ``data-`` attributes (escaped, so a name cannot break out).

    >>> document_link("a&b.md")
    '<a class="doc-link" href="#documents" data-source="a&amp;b.md" data-chunk="">in Documents</a>'
    """
    if not source:
        return ""
    return (
        f'<a class="doc-link" href="#documents" data-source="{html.escape(source, quote=True)}"'
        f' data-chunk="{html.escape(chunk_id, quote=True)}">{html.escape(label)}</a>'
    )


def _safe_url(url: Any) -> str:
    # Only http(s) links: a document cannot smuggle a javascript: URL into the page.
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return (
            f'<a class="src-url" href="{html.escape(url, quote=True)}" target="_blank"'
            f' rel="noopener noreferrer">{html.escape(url)}</a>'
        )
    return ""


DOCUMENT_FIELDS = ("title", "file_name", "source", "author", "publication")


def matches(doc: Mapping[str, Any], query: str) -> bool:
    """Whether every word of ``query`` is in the document's title, file name, author or
    publication (case ignored).

    >>> matches({"title": "Economy of Iran", "author": ""}, "iran econ")
    True
    """
    hay = " ".join(str(doc.get(k) or "") for k in DOCUMENT_FIELDS).lower()
    return all(word in hay for word in query.lower().split())


def documents_html(docs: Sequence[Mapping[str, Any]], query: str = "") -> str:
    """The documents view's table (``DocumentInfo.to_dict()`` rows), filtered by ``query``;
    every title opens the document (``document_link``), everything from a document escaped."""
    shown = [d for d in docs if matches(d, query)]
    count = f"{len(shown)} of {len(docs)} documents" if query.strip() else f"{len(docs)} documents"
    if not shown:
        empty = "No document matches the filter." if docs else "No documents are indexed yet."
        return f'<div class="doc-count">{html.escape(count)}</div><div class="doc-empty">{empty}</div>'
    rows = []
    for d in shown:
        source = str(d.get("source") or "")
        title = document_link(source, label=str(d.get("title") or source))
        indexed = str(d.get("indexed") or "")
        when = html.escape(indexed[:16].replace("T", " "))
        rows.append(
            f'<tr data-source="{html.escape(source, quote=True)}"><td class="doc-title">{title}</td>'
            f"<td><code>{html.escape(str(d.get('file_name') or ''))}</code></td>"
            f"<td>{html.escape(str(d.get('author') or ''))}</td>"
            f"<td>{html.escape(str(d.get('publication') or ''))}</td>"
            f'<td class="doc-num">{int(d.get("chunks") or 0):,}</td>'
            f'<td title="{html.escape(indexed, quote=True)}">{when}</td>'
            f"<td>{_safe_url(d.get('url'))}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Title", "File", "Author", "Publication", "Chunks", "Indexed (UTC)", "Source")
    )
    return (
        f'<div class="doc-count">{html.escape(count)}</div>'
        f'<table class="doc-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def document_html(doc: Mapping[str, Any], passages: Sequence[Mapping[str, Any]], cited: str = "") -> str:
    """One document: its title and byline, then its passages in order, rendered and escaped as
    in the sources panel; passage ``cited`` (a chunk id) is marked, for the page to scroll to."""
    title = html.escape(str(doc.get("title") or doc.get("source") or "Untitled"))
    named = ", ".join(x for x in (str(doc.get(k) or "").strip() for k in ("author", "publication")) if x)
    byline = f'<span class="src-by"> — {html.escape(named)}</span>' if named else ""
    items = []
    for p in passages:
        section = str(p.get("section") or "")
        mark = str(p.get("chunk_id") or "") == cited and bool(cited)
        text = (
            f"<mark>{html.escape(str(p.get('text') or ''))}</mark>"
            if mark
            else html.escape(str(p.get("text") or ""))
        )
        items.append(
            f'<div class="src doc-passage{" cited" if mark else ""}" id="doc-p-{int(p.get("index") or 0)}">'
            + (f'<div class="src-section">{html.escape(section)}</div>' if section else "")
            + f'<div class="src-text">{text}</div></div>'
        )
    chunks = f"{len(passages)} passage{'s' if len(passages) != 1 else ''}"
    source = html.escape(str(doc.get("source") or ""))
    return (
        f'<div class="doc-head"><span class="src-title">{title}</span>{byline}</div>'
        f'<div class="src-meta"><code>{source}</code> {_safe_url(doc.get("url"))} · {chunks}</div>'
        f"{''.join(items)}"
    )


def sources_html(turns: Sequence[Mapping[str, Any]]) -> str:
    """The sources panel: for each answer (newest first), only the passages it cites.

    ``turns`` are the chat's turns (``{"question", "answer": Answer.to_dict() | None, ...}``).
    The newest answer's group is open; its passages are folded until a marker is clicked.
    """
    groups: list[str] = []
    last = len(turns) - 1
    for t in range(last, -1, -1):
        answer = turns[t].get("answer") or {}
        citations = answer.get("citations") or []
        question = html.escape(_shorten(str(turns[t].get("question", "")), 90))
        if citations:
            items = "".join(_citation_html(t, c, open_=False) for c in citations)
            summary = f"Answer {t + 1}: <q>{question}</q>"
        elif answer.get("refused") and answer.get("retrieved"):
            # A refusal says the documents do not answer; the nearest passages let a reader
            # check that, or find what is close, instead of taking it on trust.
            items = "".join(_closest_html(t, i, p) for i, p in enumerate(answer["retrieved"][:CLOSEST]))
            summary = f"Answer {t + 1}: <q>{question}</q> — not answered; the closest passages"
        else:
            continue
        groups.append(
            f'<details class="src-group" id="src-{t}"{" open" if t == last else ""}>'
            f"<summary>{summary}</summary>{items}</details>"
        )
    if not groups:
        return '<div class="src-empty">Passages cited by the answers appear here.</div>'
    return "".join(groups)


def status_line(status: Mapping[str, Any]) -> str:
    """``"27 documents · 1,234 chunks · answerer: extractive"`` (Markdown, escaped)."""
    parts = []
    if "documents" in status:
        parts.append(f"{int(status['documents']):,} documents")
    if "chunks" in status:
        parts.append(f"{int(status['chunks']):,} chunks")
    if status.get("answerer"):
        parts.append(f"answerer: {escape_markdown(str(status['answerer']))}")
    return " · ".join(parts)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
