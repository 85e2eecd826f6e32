"""The web chat's callbacks and rendering, as plain functions (no server, fake embeddings)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rag.answering import AnswererError
from rag.config import Settings
from rag.feedback import read_feedback
from rag.ratelimit import RateLimiter
from rag.retrieval import Passage
from rag.web.app import (
    ChatError,
    View,
    WebChat,
    assistant_or_problem,
    build_ui,
    conversation,
    launch_options,
    messages,
    user_key,
)
from rag.web.render import answer_markdown, escape_markdown, highlight, sources_html, status_line
from tests.conftest import make_settings
from tests.fakes import HashingEmbeddings, build_fake_assistant, write_corpus

QUESTION = "What policy is an immense failure?"
EVIL = "<script>window.pwned = 1</script>"
EVIL_IMG = '<img src=x onerror="window.pwned = 2">'


@pytest.fixture
def chat(settings: Settings) -> WebChat:
    return WebChat(build_fake_assistant(settings), settings)


def last(views: Iterator[View]) -> View:
    out = list(views)
    assert out, "the callback showed nothing"
    return out[-1]


# -- rendering --------------------------------------------------------------------------------


def unescaped_markup(markdown: str) -> list[str]:
    """Markdown/HTML syntax characters not neutralised by a backslash."""
    return re.findall(r"(?<!\\)[<>\[\]()*_`$&]", markdown)


def test_escape_markdown_leaves_no_markup() -> None:
    text = f"{EVIL} **bold** [x](javascript:alert(1)) $x$ a_b `c` &amp;"
    out = escape_markdown(text)
    assert unescaped_markup(out) == []
    assert re.sub(r"\\(.)", r"\1", out) == text


def test_answer_markdown_links_each_marker_to_its_passage() -> None:
    out = answer_markdown("Talks help. [1][3] Trade is 70%. [2]", turn=4, note="backend down")
    assert "[\\[1\\]](#src-4-1)" in out and "[\\[3\\]](#src-4-3)" in out and "[\\[2\\]](#src-4-2)" in out
    assert out.endswith("*Note: backend down*")


def test_unsupported_sentences_are_flagged() -> None:
    text = "Talks help. [1] The moon is cheese. [1]"
    out = answer_markdown(text, turn=0, unsupported=["The moon is cheese. [1]"])
    assert out.count("\u26a0") == 2  # the flag after the sentence, and the legend
    assert out.index("cheese") < out.index("\u26a0") and "Talks help" not in out.split("\u26a0")[1]
    assert "does not support" in out
    assert "\u26a0" not in answer_markdown(text, turn=0)


def test_chat_flags_sentences_the_chain_marked_unsupported(chat: WebChat) -> None:
    final = last(chat.respond(QUESTION, []))
    answer = final.turns[0]["answer"]
    assert all(s["supported"] for s in answer["sentences"])  # extractive: quoted, supported
    assert "\u26a0" not in final.messages[1]["content"]
    answer["sentences"][0]["supported"] = False
    assert "\u26a0" in messages(final.turns)[1]["content"]


def test_answers_keep_emphasis_but_no_other_markup() -> None:
    out = answer_markdown(
        f"The **Nuclear Suppliers Group** (*NSG*) {EVIL} [x](javascript:alert(1)). [1]", turn=0
    )
    assert "**Nuclear Suppliers Group**" in out and "\\(*NSG*\\)" in out
    assert [c for c in unescaped_markup(out.split(" [\\[1")[0]) if c not in "*"] == []


def test_highlight_marks_the_quote_and_escapes_everything() -> None:
    text = f"Intro {EVIL}. The  policy\nfailed badly. Outro {EVIL_IMG}."
    out = highlight(text, "The policy failed badly.")
    assert "<mark>The  policy\nfailed badly.</mark>" in out
    assert "<script" not in out and "<img" not in out and "&lt;script&gt;" in out
    assert highlight("No match here.", "Something else.") == "No match here."


def citation(n: int, **overrides: Any) -> dict[str, Any]:
    c = {
        "n": n,
        "source": "a.md",
        "title": "Title",
        "section": "Sec",
        "url": "https://example.org/a",
        "text": "First. Quoted sentence. Last.",
        "quote": "Quoted sentence.",
    }
    c.update(overrides)
    return c


def test_sources_html_lists_only_cited_passages_newest_first() -> None:
    turns = [
        {"question": "q1", "answer": {"citations": [citation(2, title="Older")]}},
        {"question": "q2", "answer": {"citations": []}},
        {
            "question": "q3",
            "answer": {"citations": [citation(1, title="Newer")], "retrieved": [{"text": "unused"}]},
        },
    ]
    out = sources_html(turns)
    assert 'id="src-0-2"' in out and 'id="src-2-1"' in out and "src-1-" not in out
    assert out.index("Newer") < out.index("Older")
    assert "unused" not in out
    assert out.count("<mark>Quoted sentence.</mark>") == 2
    assert 'href="https://example.org/a"' in out
    assert 'id="src-2" open' in out and 'id="src-0" open' not in out


def test_a_refusal_shows_the_closest_passages_escaped() -> None:
    near = [
        {"source": f"d{i}.md", "chunk_id": f"c{i}", "title": f"Doc {i}", "section": "S", "text": EVIL}
        for i in range(5)
    ]
    refused = {"refused": True, "citations": [], "retrieved": near}
    out = sources_html([{"question": "How many troops?", "answer": refused}])
    assert "not answered; the closest passages" in out
    assert [f"Doc {i}" in out for i in range(5)] == [True, True, True, False, False]
    assert "<script" not in out and "&lt;script&gt;" in out
    assert 'data-source="d0.md" data-chunk="c0"' in out
    # an answer, or a refusal with nothing retrieved (an empty index), adds no such group
    answered = {"refused": False, "citations": [], "retrieved": near}
    empty = {"refused": True, "citations": [], "retrieved": []}
    for answer in (answered, empty):
        assert "closest" not in sources_html([{"question": "q", "answer": answer}])


def test_sources_html_escapes_document_fields_and_drops_script_urls() -> None:
    evil = citation(1, title=EVIL, section=EVIL_IMG, text=f"A {EVIL} B", quote="A", url="javascript:alert(1)")
    out = sources_html([{"question": EVIL, "answer": {"citations": [evil]}}])
    assert "<script" not in out and "<img" not in out and "javascript:" not in out
    assert "&lt;script&gt;" in out


def test_sources_html_names_author_and_publication() -> None:
    cites = [
        citation(1, title="Why Talk?", author="Jane Writer", publication="The <b>Gazette</b>"),
        citation(2, title="Factbook", author="", publication=""),
    ]
    out = sources_html([{"question": "q", "answer": {"citations": cites}}])
    by = '<span class="src-by"> \u2014 Jane Writer, The &lt;b&gt;Gazette&lt;/b&gt;</span>'
    assert f'<span class="src-title">Why Talk?</span>{by}' in out
    assert '<span class="src-title">Factbook</span> › ' in out  # nothing named, nothing shown


def test_status_line() -> None:
    assert status_line({"documents": 27, "chunks": 1490, "answerer": "extractive"}) == (
        "27 documents · 1,490 chunks · answerer: extractive"
    )


# -- asking -----------------------------------------------------------------------------------


def test_respond_streams_then_shows_cited_answer(chat: WebChat) -> None:
    views = list(chat.respond(QUESTION, []))
    assert len(views) >= 3  # the question, at least one streamed piece, the final answer
    assert all(v.busy for v in views[:-1]) and not views[-1].busy
    streamed = [v.messages[1]["content"] for v in views[1:-1]]
    assert any("immense failure" in m for m in streamed)
    final = views[-1]
    assert final.box == "" and final.notice == ""
    assert [m["role"] for m in final.messages] == ["user", "assistant"]
    answer = final.turns[0]["answer"]
    assert "immense failure" in answer["answer"] and answer["citations"]
    assert "](#src-0-1)" in final.messages[1]["content"]
    assert 'id="src-0-1"' in final.sources and "<mark>" in final.sources
    assert final.turns[0]["draft"] == ""


def test_followup_uses_the_history(chat: WebChat) -> None:
    first = last(chat.respond(QUESTION, []))
    second = last(chat.respond("Who wrote it?", first.turns))
    assert len(second.turns) == 2 and len(second.messages) == 4
    answer = second.turns[1]["answer"]
    assert answer["standalone_question"] == f"{QUESTION} Who wrote it?"
    assert 'id="src-1"' in second.sources and 'id="src-0"' in second.sources


def test_conversation_skips_failed_turns() -> None:
    turns = [
        {"question": "q1", "answer": {"answer": "a1", "citations": [{"source": "x.md"}, {"source": "x.md"}]}},
        {"question": "q2", "answer": None, "error": "down"},
    ]
    assert conversation(turns) == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1", "sources": ["x.md"]},
    ]


@pytest.mark.parametrize(
    ("question", "message"), [("   ", "Please type a question."), ("x" * 2001, "the limit is 2,000")]
)
def test_bad_questions_get_a_message_and_no_turn(chat: WebChat, question: str, message: str) -> None:
    view = last(chat.respond(question, []))
    assert message in view.notice.replace("\\", "")
    assert view.turns == [] and view.messages == [] and not view.busy
    assert view.box == question  # kept, so it can be shortened


def test_rate_limit_is_per_user_with_a_message(settings: Settings) -> None:
    chat = WebChat(build_fake_assistant(settings), settings, limiter=RateLimiter(1, clock=lambda: 0.0))
    assert last(chat.respond(QUESTION, [], user="ann")).turns
    view = last(chat.respond(QUESTION, [], user="ann"))
    assert "limit" in view.notice and "wait about 60 s" in view.notice and view.turns == []
    assert last(chat.respond(QUESTION, [], user="bob")).turns


def test_missing_index_gives_a_clear_message(settings: Settings) -> None:
    chat = WebChat(None, settings, problem="no index in .rag: run `rag ingest`")
    view = last(chat.respond(QUESTION, []))
    assert "run \\`rag ingest\\`" in view.notice and view.turns == []
    assert chat.status().startswith("Not ready")
    with pytest.raises(ChatError, match="rag ingest"):
        chat.ask_api(QUESTION, None)


class DownAnswerer:
    name = "openai"

    def stream(self, question: str, passages: Sequence[Passage], history: Sequence[Any]) -> Iterator[str]:
        raise AnswererError("cannot reach the LLM at http://127.0.0.1:9 (connection refused)")
        yield ""  # pragma: no cover - makes this a generator


def test_backend_down_is_a_message_not_a_traceback(settings: Settings) -> None:
    chat = WebChat(build_fake_assistant(settings, answerer=DownAnswerer()), settings)
    view = last(chat.respond(QUESTION, []))
    assert "not available" in view.notice and "connection refused" in view.notice
    assert view.turns[0]["answer"] is None and "not available" in view.messages[1]["content"]
    assert not view.busy
    with pytest.raises(ChatError, match="not available"):
        chat.ask_api(QUESTION, None)


def test_backend_down_with_fallback_shows_the_note(settings: Settings) -> None:
    from rag.answering.extractive import ExtractiveAnswerer

    fake = HashingEmbeddings()
    assistant = build_fake_assistant(
        settings, embeddings=fake, answerer=DownAnswerer(), fallback=ExtractiveAnswerer(fake, min_score=0.1)
    )
    view = last(WebChat(assistant, settings).respond(QUESTION, []))
    assert view.turns[0]["answer"]["mode"] == "extractive"
    assert "*Note: cannot reach the LLM" in view.messages[1]["content"]


def test_unexpected_failure_is_logged_and_summarised(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        status: ClassVar[dict[str, Any]] = {}

        def stream(self, question: str, history: Any = None) -> Iterator[Any]:
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="rag.web.app"):
        view = last(WebChat(Broken(), settings).respond(QUESTION, []))  # type: ignore[arg-type]
    assert "went wrong" in view.notice and "boom" not in view.notice and "Traceback" not in view.notice
    assert "boom" in caplog.text


def test_question_html_is_escaped_in_the_chat(chat: WebChat) -> None:
    view = last(chat.respond(f"{EVIL} {EVIL_IMG} policy failure?", []))
    assert unescaped_markup(view.messages[0]["content"]) == []


# -- feedback, new chat, API --------------------------------------------------------------------


def test_feedback_is_appended_with_question_answer_and_citations(chat: WebChat) -> None:
    turns = last(chat.respond(QUESTION, [])).turns
    assert chat.feedback(turns, 1, True, user="host:127.0.0.1") == "Thanks for the feedback."
    assert chat.feedback(turns, 1, False) == "Thanks for the feedback."
    assert chat.feedback(turns, 1, "") == "Feedback withdrawn."
    assert chat.feedback(turns, 0, True) == "Only answers can be rated."
    assert chat.feedback(turns, 3, True) == "Only answers can be rated."
    assert chat.feedback_path is not None
    records = read_feedback(chat.feedback_path)
    assert [r["rating"] for r in records] == ["up", "down"]
    first = records[0]
    assert first["channel"] == "web" and first["user"] == "host:127.0.0.1"
    assert first["question"] == QUESTION and "immense failure" in first["answer"]
    assert (
        first["citations"][0]["source"] == "article.md"
        and "immense failure" in first["citations"][0]["quote"]
    )


def test_feedback_on_a_failed_turn_is_refused(chat: WebChat) -> None:
    turns = [{"question": "q", "answer": None, "error": "down"}]
    assert chat.feedback(turns, 1, True) == "This message has no answer to rate."
    assert chat.feedback_path is not None and not chat.feedback_path.exists()


def test_new_chat_clears_everything(chat: WebChat) -> None:
    view = chat.new_chat()
    assert view.turns == [] and view.messages == [] and view.box == "" and not view.busy
    assert 'id="src-' not in view.sources


def test_api_returns_the_json_of_rag_ask(chat: WebChat) -> None:
    assert chat.assistant is not None
    expected = chat.assistant.ask(QUESTION).to_dict()
    got = chat.ask_api(QUESTION, None)
    expected.pop("timings_ms"), got.pop("timings_ms")
    assert got == expected
    history = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": expected["answer"]}]
    assert chat.ask_api("Who wrote it?", history)["standalone_question"] == f"{QUESTION} Who wrote it?"
    with pytest.raises(ChatError, match="Please type a question"):
        chat.ask_api("", None)


def test_user_key_prefers_the_signed_in_user() -> None:
    class Client:
        host = "10.0.0.7"

    class Request:
        username: str | None = "ann"
        client = Client()
        session_hash = "abc"

    assert user_key(Request()) == "user:ann"
    Request.username = None
    assert user_key(Request()) == "host:10.0.0.7"
    assert user_key(None) == "anonymous"


# -- wiring -----------------------------------------------------------------------------------


def test_launch_options_come_from_settings(tmp_path: Path) -> None:
    default = launch_options(make_settings(tmp_path))
    assert default["server_name"] == "127.0.0.1" and default["server_port"] == 7860
    assert default["auth"] is None and default["share"] is False
    custom = launch_options(
        make_settings(tmp_path, host="0.0.0.0", port=8123, auth=["ann:s3:cret", "bob:pw"])
    )
    assert custom["server_name"] == "0.0.0.0" and custom["server_port"] == 8123
    assert custom["auth"] == [("ann", "s3:cret"), ("bob", "pw")]


def test_build_ui_documents_only_the_ask_endpoint(chat: WebChat, settings: Settings) -> None:
    demo = build_ui(chat.assistant, settings)
    documented = {
        d["api_name"] for d in demo.config["dependencies"] if d.get("api_visibility", "public") == "public"
    }
    assert documented == {"ask"}
    api = demo.get_api_info()
    assert list(api["named_endpoints"]) == ["/ask"]
    params = [p["parameter_name"] for p in api["named_endpoints"]["/ask"]["parameters"]]
    assert params == ["question", "history"]


def test_open_assistant_builds_a_missing_index(settings: Settings) -> None:
    assert not settings.manifest_path.exists()
    assistant, problem = assistant_or_problem(settings, embeddings=HashingEmbeddings())
    assert problem is None and assistant is not None
    assert assistant.status["documents"] == 3


def test_open_assistant_without_a_corpus_says_what_to_do(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # no corpus folder written
    assistant, problem = assistant_or_problem(settings, embeddings=HashingEmbeddings())
    assert assistant is None and problem is not None
    assert "does not exist" in problem and "rag ingest" in problem


def test_open_assistant_updates_a_stale_index(settings: Settings) -> None:
    fake = HashingEmbeddings()
    assistant_or_problem(settings, embeddings=fake)
    write_corpus(settings.corpus_dir, {"extra.md": "# Extra\n\nPenguins live in Antarctica.\n"})
    assistant, problem = assistant_or_problem(settings, embeddings=fake)
    assert problem is None and assistant is not None and assistant.status["documents"] == 4
