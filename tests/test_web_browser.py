"""The web chat end to end: the real app (``python app.py``) on a free loopback port, driven in
headless Debian Chromium, plus its ``gradio_client`` API.

One app process per corpus (module-scoped): the bundled corpus (a copy of the ``real_index``
data directory, so feedback lands in a file of our own) and a small hostile corpus whose
document carries ``<script>`` and ``<img onerror>``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rag.config import Settings
from rag.feedback import read_feedback
from tests.conftest import REPO, SHARED_MODELS, stop_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # Chromium

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
FIRST = "What policy does the author call an immense failure?"
BOX = "#question textarea"
BOTS = '#chat [data-testid="bot"]'


@dataclass
class App:
    url: str
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_app(tmp: Path, data_dir: Path, corpus_dir: Path, **env: str) -> Iterator[App]:
    port = free_port()
    log = tmp / "app.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    environ.update(
        RAG_DATA_DIR=str(data_dir),
        RAG_CORPUS_DIR=str(corpus_dir),
        RAG_MODEL_CACHE_DIR=str(SHARED_MODELS),
        RAG_PORT=str(port),
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        ANONYMIZED_TELEMETRY="False",
        **env,
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=REPO, env=environ, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # loads the model; builds the index when there is none
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url + "/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not answer on {url}:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield App(url, data_dir, log, process)
    finally:
        stop_process(process)


def start_app_on_copy(
    real_index: Settings, tmp_path_factory: pytest.TempPathFactory, name: str, **env: str
) -> Iterator[App]:
    """``start_app`` over a copy of the session's real index (the app writes feedback and locks)."""
    tmp = tmp_path_factory.mktemp(name)
    data = tmp / "data"
    shutil.copytree(real_index.data_dir, data, ignore=shutil.ignore_patterns("*.lock", "feedback.jsonl"))
    yield from start_app(tmp, data, real_index.corpus_dir, **env)


def record_answer_texts(page: Any) -> None:
    """Record in ``window.__seen`` every text the last answer bubble shows, to see it stream."""
    page.evaluate(
        """() => { window.__seen = [];
        new MutationObserver(() => {
          const bots = document.querySelectorAll('#chat [data-testid="bot"]');
          if (bots.length) window.__seen.push(bots[bots.length - 1].innerText.trim());
        }).observe(document.querySelector('#chat'), {subtree: true, childList: true, characterData: true});
        }"""
    )


@pytest.fixture(scope="module")
def app(real_index: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    yield from start_app_on_copy(real_index, tmp_path_factory, "web-app", RAG_RATE_LIMIT_PER_MINUTE="1000")


HOSTILE = """---
title: "Zebra notes <script>window.__pwned = 'title'</script>"
source_url: "javascript:window.__pwned='url'"
---

# Zebra stripes <img src=x onerror="window.__pwned='section'">

Zebra stripes confuse biting flies <img src=x onerror="window.__pwned='img'"> according to field studies.
Zebras sleep standing up <script>window.__pwned='script'</script> on the open savanna.
"""


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("web-hostile")
    corpus = tmp / "corpus"
    corpus.mkdir()
    (corpus / "zebras.md").write_text(HOSTILE, encoding="utf-8")
    (corpus / "lions.txt").write_text("Lions live in prides and hunt at night.\n", encoding="utf-8")
    # No index yet: the app must build it at start-up.
    yield from start_app(tmp, tmp / "data", corpus)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: run `make apt-test`")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Tab:
    page: Any
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def ask(self, question: str) -> Any:
        """Type ``question``, send it, wait for the finished answer, return its element."""
        before = self.page.locator(BOTS).count()
        self.page.fill(BOX, question)
        self.page.press(BOX, "Enter")
        self.page.wait_for_function(
            f"document.querySelectorAll('{BOTS}').length > {before}"
            f" && !document.querySelector('{BOX}').disabled",
            timeout=60_000,
        )
        return self.page.locator(BOTS).nth(before)


def open_tab(browser: Any, app: App) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    tab = Tab(page)
    page.on("request", lambda request: tab.requests.append(request.url))
    page.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(app.url, wait_until="load")
    page.wait_for_selector(BOX)
    yield tab
    context.close()
    # Offline: every request the page made went to the app itself.
    outside = [u for u in tab.requests if not u.startswith((app.url, "data:", "blob:"))]
    assert outside == [], f"the page called out: {outside[:5]}"


@pytest.fixture
def tab(browser: Any, app: App) -> Iterator[Tab]:
    yield from open_tab(browser, app)


def test_empty_screen_shows_examples_and_status(tab: Tab) -> None:
    page = tab.page
    assert page.get_by_text(FIRST).is_visible()
    status = page.locator("#status").inner_text()
    assert "26 documents" in status and "chunks" in status and "answerer: extractive" in status
    assert "Passages cited by the answers appear here." in page.locator("#sources").inner_text()


def test_example_answer_streams_then_cites_and_highlights(tab: Tab) -> None:
    page = tab.page
    record_answer_texts(page)
    page.get_by_text(FIRST).click()  # an example question on the empty screen
    page.wait_for_function(
        f"document.querySelectorAll('{BOTS}').length > 0 && !document.querySelector('{BOX}').disabled"
    )
    bot = page.locator(BOTS).first
    final = bot.inner_text().strip()
    assert "strategic patience" in final.lower()
    seen = [s for s in page.evaluate("window.__seen") if s]
    assert "…" in seen, "no placeholder while the answer was being prepared"  # shown before the text

    links = bot.locator('a[href^="#src-0-"]')
    assert links.count() >= 1, bot.inner_html()
    link = links.first  # the first sentence's citation
    target = (link.get_attribute("href") or "#")[1:]
    assert link.inner_text() == f"[{target.rsplit('-', 1)[-1]}]", final
    passage = page.locator(f"#{target}")
    assert passage.get_attribute("open") is None  # folded until its marker is clicked
    link.click()
    page.wait_for_function(f"document.getElementById('{target}').open")
    mark = passage.locator("mark")
    assert mark.is_visible() and "immense failure" in mark.inner_text()
    summary = passage.locator("summary").inner_text()
    assert "Why Should the US Talk to North Korea?" in summary
    assert len(page.context.pages) == 1  # the marker did not open a new tab
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-cited-answer.png"))


def test_long_answer_streams_sentence_by_sentence(tab: Tab) -> None:
    page = tab.page
    record_answer_texts(page)
    final = tab.ask("How long is North Korea's coastline?").inner_text().strip()
    assert "2,495 km" in final
    assert final.count("[") >= 2, f"need a multi-sentence answer to watch it stream: {final!r}"
    partial = [s for s in page.evaluate("window.__seen") if s and s != "…" and s != final]
    assert any(final.startswith(s) for s in partial), "the answer never showed part-way"


def test_followup_uses_the_conversation(tab: Tab) -> None:
    tab.ask(FIRST)
    answer = tab.ask("Who wrote it?").inner_text()
    assert "DePetris" in answer
    assert tab.page.locator("#src-1 details.src").count() >= 1


def test_feedback_is_written_to_the_file(tab: Tab, app: App) -> None:
    bot = tab.ask(FIRST)
    feedback = app.data_dir / "feedback.jsonl"
    before = len(read_feedback(feedback))
    tab.page.locator('#chat button[aria-label="Like"]').last.click()
    tab.page.wait_for_function("document.querySelector('#notice').innerText.includes('Thanks')")
    records = read_feedback(feedback)
    assert len(records) == before + 1
    record = records[-1]
    assert record["rating"] == "up" and record["channel"] == "web" and record["question"] == FIRST
    assert "strategic patience" in record["answer"].lower()
    assert "immense failure" in record["citations"][0]["quote"]
    assert bot.is_visible()


def test_empty_and_too_long_questions_get_a_message(tab: Tab) -> None:
    page = tab.page
    page.click("#send")
    page.wait_for_function("document.querySelector('#notice').innerText.includes('Please type a question.')")
    page.fill(BOX, "why " * 600)
    page.click("#send")
    page.wait_for_function("document.querySelector('#notice').innerText.includes('the limit is 2,000')")
    assert page.locator(BOTS).count() == 0


def test_new_chat_starts_over(tab: Tab) -> None:
    tab.ask(FIRST)
    tab.page.click("#new-chat")
    tab.page.wait_for_function(f"document.querySelectorAll('{BOTS}').length === 0")
    assert tab.page.get_by_text(FIRST).is_visible()  # the examples are back
    assert tab.page.locator("#sources details").count() == 0


def test_api_endpoint_returns_the_json_of_rag_ask(
    app: App, real_index: Settings, real_embeddings: Any
) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from rag.answering import open_assistant

    client = Client(app.url, verbose=False)
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/ask"]
    got = client.predict(question=FIRST, api_name="/ask")
    local = Settings(_env_file=None, corpus_dir=real_index.corpus_dir, data_dir=app.data_dir)  # type: ignore[call-arg]
    expected = json.loads(json.dumps(open_assistant(local, embeddings=real_embeddings).ask(FIRST).to_dict()))
    got.pop("timings_ms"), expected.pop("timings_ms")
    assert got == expected
    history = [{"role": "user", "content": FIRST}, {"role": "assistant", "content": got["answer"]}]
    followup = client.predict(question="Who wrote it?", history=history, api_name="/ask")
    assert followup["standalone_question"].startswith(FIRST)
    with pytest.raises(AppError, match="Please type a question"):
        client.predict(question="  ", api_name="/ask")


def test_document_html_is_shown_as_text_and_never_runs(browser: Any, hostile_app: App) -> None:
    for tab in open_tab(browser, hostile_app):
        page = tab.page
        bot = tab.ask("Why do zebras have stripes that confuse biting flies?")
        assert "biting flies" in bot.inner_text()
        page.locator(f"{BOTS} a[href^='#src-0-']").first.click()
        passage = page.locator("#sources details.src[open]").first
        passage.wait_for()
        text = page.locator("#sources").inner_text()
        assert "<script>window.__pwned = 'title'</script>" in text  # the title, as text
        assert "onerror" in passage.inner_text()
        assert page.evaluate("window.__pwned") is None
        assert tab.dialogs == []
        for where in ("#sources", "#chat .message-content"):
            assert page.locator(f"{where} script").count() == 0
            assert page.locator(f"{where} img[src='x']").count() == 0
        assert page.locator("#sources a[href^='javascript']").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-hostile-document.png"))
