"""Block Kit / mrkdwn rendering: conversion, escaping, Slack's limits."""

from __future__ import annotations

import json
import re

from rag.answering import Answer, Citation
from rag.retrieval import Passage
from rag.slack.format import (
    BLOCKS_PER_MESSAGE,
    FEEDBACK_BLOCK_ID,
    SECTION_TEXT_LIMIT,
    escape,
    feedback_block,
    markdown_to_mrkdwn,
    render_answer,
    slack_to_plain,
    split_text,
)

# Every "<...>" in mrkdwn we produce must be one of our links to an http(s) URL.
ANGLE = re.compile(r"<([^<>]*)>")


def passage(
    n: int,
    *,
    url: str | None = "https://example.org/doc",
    title: str = "Doc",
    section: str = "Part",
    text: str = "Some text.",
) -> Passage:
    meta = {"source": f"doc{n}.md", "title": title, "section": section}
    if url:
        meta["source_url"] = url
    return Passage(chunk_id=f"doc{n}.md#{n}", text=text, metadata=meta, similarity=0.8)


def answer(text: str, citations: list[Citation] | None = None, refused: bool = False) -> Answer:
    cites = citations or []
    return Answer(
        question="What?",
        answer=text,
        refused=refused,
        citations=cites,
        retrieved=[c.passage for c in cites],
        mode="extractive",
    )


def section_texts(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def assert_only_safe_links(mrkdwn: str) -> None:
    for inner in ANGLE.findall(mrkdwn):
        assert re.fullmatch(r"https?://[^\s|<>]+\|[^<>]*", inner), f"unexpected Slack markup <{inner}>"


def test_markdown_becomes_mrkdwn_and_keeps_markers() -> None:
    md = (
        "## Trade\n\nChina accounts for **70 percent** of trade [1][2]. It is *large* ~~small~~.\n\n"
        "- first `code`\n- [CIA](https://cia.gov/x) item\n\n1. one\n2. two"
    )
    assert markdown_to_mrkdwn(md) == (
        "*Trade*\n\nChina accounts for *70 percent* of trade [1][2]. It is _large_ ~small~.\n\n"
        "• first `code`\n• <https://cia.gov/x|CIA> item\n\n1. one\n2. two"
    )


def test_document_text_cannot_mention_or_link() -> None:
    evil = (
        "Alert <!channel> <!here|here> <@U999> see <http://evil.example|your bank> & [x](javascript:alert(1))"
    )
    out = markdown_to_mrkdwn(evil)
    assert "&lt;!channel&gt;" in out and "&lt;http://evil.example|your bank&gt;" in out and "&amp;" in out
    assert "<!" not in out and "<@" not in out and "<http" not in out and "<javascript" not in out
    assert_only_safe_links(out)


def test_raw_html_and_reference_definitions_are_text() -> None:
    out = markdown_to_mrkdwn("Cited [1].\n\n[1]: https://evil.example\n\n<b>bold</b>")
    assert "[1]: https://evil.example" in out and "&lt;b&gt;bold&lt;/b&gt;" in out
    assert "<https://evil.example" not in out


def test_escape() -> None:
    assert escape("a < b > c & d") == "a &lt; b &gt; c &amp; d"


def test_split_text_respects_limit_words_and_links() -> None:
    link = "<https://example.org/a|a link with several words>"
    text = " ".join([f"word{i}" for i in range(400)] + [link] + ["tail"] * 50)
    pieces = split_text(text, limit=300)
    assert len(pieces) > 5
    assert all(len(p) <= 300 for p in pieces)
    assert " ".join(pieces).split() == text.split()  # nothing lost or duplicated
    assert sum(link in p for p in pieces) == 1  # the link stayed whole


def test_split_text_prefers_paragraphs() -> None:
    assert split_text("aaa bbb\n\nccc ddd", limit=10) == ["aaa bbb", "ccc ddd"]


def test_render_answer_with_sources() -> None:
    cites = [
        Citation(
            1, passage(1, title="Factbook: Korea, North", section="Economy > GDP"), "GDP was 40 billion."
        ),
        Citation(2, passage(2, url=None, title="Notes", section=""), "Kimchi is fermented."),
    ]
    (msg,) = render_answer(answer("GDP was 40 billion [1]. Kimchi [2].", cites), feedback_id="f1")
    types = [b["type"] for b in msg.blocks]
    assert types == ["section", "divider", "section", "actions"]
    answer_text, sources = section_texts(msg.blocks)
    assert answer_text == "GDP was 40 billion [1]. Kimchi [2]."
    assert sources.splitlines() == [
        "*Sources*",
        "*[1]* <https://example.org/doc|Factbook: Korea, North> · _Economy &gt; GDP_",
        "> GDP was 40 billion.",
        "*[2]* Notes",
        "> Kimchi is fermented.",
    ]
    assert msg.text == "GDP was 40 billion [1]. Kimchi [2]."
    assert all(b["text"].get("verbatim") is True for b in msg.blocks if b["type"] == "section")
    actions = msg.blocks[-1]
    assert actions["block_id"] == FEEDBACK_BLOCK_ID
    assert [e["action_id"] for e in actions["elements"]] == ["rag_feedback_up", "rag_feedback_down"]
    assert json.loads(actions["elements"][0]["value"]) == {"id": "f1", "q": "What?"}


def test_sources_escape_titles_sections_quotes_and_urls() -> None:
    bad = passage(1, url="https://example.org/a b|c>d?x=1&y=2", title="T <!channel>", section="S <@U1>")
    (msg,) = render_answer(answer("Claim [1].", [Citation(1, bad, "Quote <http://evil|x> & more")]))
    sources = section_texts(msg.blocks)[1]
    assert "<https://example.org/a%20b%7Cc%3Ed?x=1&amp;y=2|T &lt;!channel&gt;>" in sources
    assert "S &lt;@U1&gt;" in sources and "Quote &lt;http://evil|x&gt; &amp; more" in sources
    assert_only_safe_links(sources)


def test_long_quotes_are_shortened() -> None:
    (msg,) = render_answer(answer("Claim [1].", [Citation(1, passage(1), "word " * 200)]))
    quote_line = section_texts(msg.blocks)[1].splitlines()[-1]
    assert quote_line.startswith("> word") and quote_line.endswith("…") and len(quote_line) < 300


def test_refusal_is_plain() -> None:
    (msg,) = render_answer(answer("I could not find the answer to that in the documents.", refused=True))
    assert [b["type"] for b in msg.blocks] == ["section"]
    assert msg.text == "I could not find the answer to that in the documents."


def test_a_refusal_lists_the_closest_passages_escaped() -> None:
    near = [
        passage(1, title="KEDO <b>&</b>", section="Funding"),
        passage(2, url=None, title="Factbook", section="Military"),
        passage(3, title="Third"),
        passage(4, title="Fourth is not listed"),
    ]
    refusal = answer("I could not find the answer to that in the documents.", refused=True)
    refusal.retrieved = near
    (msg,) = render_answer(refusal)
    assert [b["type"] for b in msg.blocks] == ["section", "context"]
    listed = msg.blocks[1]["elements"][0]["text"]
    assert listed.startswith("_Not answered; the closest passages:_")
    assert "KEDO &lt;b&gt;&amp;&lt;/b&gt;" in listed and "_Funding_" in listed and "Factbook" in listed
    assert "<https://example.org/doc|" in listed and "Fourth" not in listed
    assert_only_safe_links(listed)
    assert msg.text == "I could not find the answer to that in the documents."


def test_note_becomes_context() -> None:
    a = answer("Claim.")
    a.note = "the generated answer was not supported <x>"
    (msg,) = render_answer(a)
    assert msg.blocks[-1]["type"] == "context"
    assert "&lt;x&gt;" in msg.blocks[-1]["elements"][0]["text"]


def test_long_answers_split_within_limits() -> None:
    long_text = "\n\n".join(
        f"Paragraph {i}. " + "lorem ipsum dolor " * 60 + f"[{i % 3 + 1}]" for i in range(12)
    )
    cites = [Citation(n, passage(n), "q") for n in (1, 2, 3)]
    (msg,) = render_answer(answer(long_text, cites), feedback_id="f")
    sections = section_texts(msg.blocks)
    assert len(sections) > 4
    assert all(len(t) <= SECTION_TEXT_LIMIT for t in sections)
    assert " ".join(sections[:-1]).split() == markdown_to_mrkdwn(long_text).split()


def test_huge_answers_continue_in_more_messages() -> None:
    huge = "\n\n".join("word " * 590 for _ in range(60))  # ~60 sections of ~2950 characters
    cites = [Citation(1, passage(1), "q")]
    messages = render_answer(answer(huge + " [1]", cites), feedback_id="f")
    assert len(messages) == 2
    assert all(len(m.blocks) <= BLOCKS_PER_MESSAGE for m in messages)
    assert all(len(t) <= SECTION_TEXT_LIMIT for m in messages for t in section_texts(m.blocks))
    assert messages[-1].blocks[-1]["block_id"] == FEEDBACK_BLOCK_ID
    assert not any(b.get("block_id") == FEEDBACK_BLOCK_ID for b in messages[0].blocks)
    assert all(m.text for m in messages)


def test_feedback_value_fits_slack_limit() -> None:
    block = feedback_block("abc", "é" * 5000)
    value = block["elements"][0]["value"]
    assert len(value) <= 2000 and json.loads(value)["id"] == "abc"


def test_slack_to_plain() -> None:
    text = "<@UBOT> what about <https://x.org|this> and <https://y.org> &amp; <#C1|general>, <@U2>? &lt;3"
    assert slack_to_plain(text, "UBOT") == "what about this and https://y.org & #general, @U2? <3"


def test_unsupported_sentences_are_flagged_under_the_answer() -> None:
    from rag.answering import Sentence

    cited = Citation(1, passage(1, text="Talks help."), "Talks help.")
    reply = answer("Talks help. [1] The moon is <!channel> cheese. [1]", [cited])
    reply.sentences = [
        Sentence("Talks help. [1]", [1], True),
        Sentence("The moon is <!channel> cheese. [1]", [1], False),
    ]
    blocks = render_answer(reply)[0].blocks
    context = [b for b in blocks if b["type"] == "context"]
    assert len(context) == 1
    text = context[0]["elements"][0]["text"]
    assert "Not supported" in text and "cheese" in text and "Talks help" not in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    reply.sentences[1].supported = True
    assert not [b for b in render_answer(reply)[0].blocks if b["type"] == "context"]


def test_sources_name_author_and_publication() -> None:
    piece = passage(1, title="Why Should the US Talk to North Korea?", section="")
    piece.metadata.update(author="Daniel DePetris", publication="The Diplomat <!here>")
    cites = [Citation(1, piece, "Talks are a sign of strength."), Citation(2, passage(2, section=""), "x")]
    (msg,) = render_answer(answer("Talk [1]. More [2].", cites))
    lines = section_texts(msg.blocks)[1].splitlines()
    assert lines[1] == (
        "*[1]* <https://example.org/doc|Why Should the US Talk to North Korea?>"
        " \u2014 Daniel DePetris, The Diplomat &lt;!here&gt;"
    )
    assert lines[3] == "*[2]* <https://example.org/doc|Doc>"  # no byline: nothing added
    assert_only_safe_links(section_texts(msg.blocks)[1])
    # The answer's JSON (web, CLI, feedback) carries them too.
    as_json = cites[0].as_dict()
    assert (as_json["author"], as_json["publication"]) == ("Daniel DePetris", "The Diplomat <!here>")
    assert (cites[1].as_dict()["author"], cites[1].as_dict()["publication"]) == ("", "")
