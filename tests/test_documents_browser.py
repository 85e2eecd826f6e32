"""The documents view and uploads end to end, with the real embedding model: through the answering
API (upload a fact found nowhere else, ask, remove, ask again), then the real app in headless
Debian Chromium (the view lists the corpus, upload then ask, bad files get their message, a
non-admin sees no upload control and gets 403 from the API)."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.answering import Upload, open_assistant, open_library
from rag.config import Settings
from rag.index.documents import discover
from tests.test_web_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, App, start_app_on_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FACT = (
    "# Lake Quillon field notes\n\n"
    "The zephyrometer at Lake Quillon was calibrated by Ottilie Brandvold in 1911.\n"
)
QUESTION = "Who calibrated the zephyrometer at Lake Quillon?"
REFUSED = "I could not find the answer to that in the documents."
USERS = '["ann:s3cret","bob:pw"]'


def copy_index(real_index: Settings, tmp: Path) -> Settings:
    data = tmp / "data"
    shutil.copytree(real_index.data_dir, data, ignore=shutil.ignore_patterns("*.lock", "feedback.jsonl"))
    return real_index.model_copy(update={"data_dir": data})


def test_an_uploaded_fact_is_answered_and_cited_then_refused_once_removed(
    real_index: Settings, real_embeddings: Any, tmp_path: Path
) -> None:
    settings = copy_index(real_index, tmp_path)
    assistant = open_assistant(settings, embeddings=real_embeddings)
    library = open_library(settings, embeddings=real_embeddings, assistant=assistant)
    assert assistant.ask(QUESTION).refused
    [result] = library.add([Upload("quillon.md", FACT.encode())])
    assert result.ok, result.message
    answer = assistant.ask(QUESTION)
    assert not answer.refused and "Brandvold" in answer.answer
    assert "uploads/quillon.md" in {c.passage.source for c in answer.citations}
    library.remove("uploads/quillon.md")
    after = assistant.ask(QUESTION)
    assert after.refused and after.answer == REFUSED


# -- in the browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(real_index: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    yield from start_app_on_copy(
        real_index,
        tmp_path_factory,
        "documents-app",
        RAG_AUTH=USERS,
        RAG_ADMINS='["ann"]',
        RAG_MAX_UPLOAD_MB="0.05",
        RAG_RATE_LIMIT_PER_MINUTE="0",
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def signed_in(browser: Any, app: App, user: str, password: str) -> Any:
    """A page of the app with ``user`` signed in (Gradio's sign-in form, posted directly)."""
    context = browser.new_context()
    page = context.new_page()
    response = page.request.post(app.url + "/login", form={"username": user, "password": password})
    assert response.ok, response.text()
    page.goto(app.url + "/", wait_until="load")
    page.wait_for_selector("#question textarea", timeout=60_000)
    return page


def open_documents(page: Any) -> None:
    page.get_by_role("tab", name="Documents").click()
    page.wait_for_selector("#doc-table tr[data-source]", timeout=60_000)


def ask(page: Any, question: str) -> str:
    page.get_by_role("tab", name="Chat").click()
    before = page.locator('#chat [data-testid="bot"]').count()
    page.fill("#question textarea", question)
    page.click("#send")
    page.wait_for_function(
        f"document.querySelectorAll('#chat [data-testid=\"bot\"]').length > {before}", timeout=120_000
    )
    page.wait_for_selector("#question textarea:not([disabled])", timeout=120_000)
    return str(page.locator('#chat [data-testid="bot"]').last.inner_text())


def api(app: App, method: str, path: str, auth: tuple[str, str]) -> int:
    token = base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(
        app.url + path, method=method, headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_view_lists_every_document_and_a_reader_cannot_upload(
    browser: Any, app: App, real_index: Settings
) -> None:
    page = signed_in(browser, app, "bob", "pw")
    open_documents(page)
    expected = len(discover(real_index.corpus_dir))
    assert expected == 26
    assert page.locator("#doc-table tr[data-source]").count() == expected
    assert f"{expected} documents" in page.inner_text("#doc-table")
    page.fill("#doc-filter textarea, #doc-filter input", "Nuclear Suppliers")
    page.wait_for_function("document.querySelectorAll('#doc-table tr[data-source]').length < 26")
    assert page.locator("#doc-table tr[data-source]").count() >= 1
    page.locator("#doc-table a.doc-link").first.click()
    page.wait_for_selector("#doc-view .doc-passage", timeout=60_000)
    assert page.locator("#doc-upload").count() == 0 or not page.locator("#doc-upload").is_visible()
    assert not page.locator("#doc-remove").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "documents-view.png"), full_page=True)
    assert api(app, "DELETE", "/api/documents/factbook.md", ("bob", "pw")) == 403
    assert api(app, "GET", "/api/documents", ("bob", "pw")) == 200
    page.context.close()


def test_upload_then_ask_then_remove(browser: Any, app: App, tmp_path: Path) -> None:
    page = signed_in(browser, app, "ann", "s3cret")
    page.on("dialog", lambda dialog: dialog.accept())
    open_documents(page)
    upload = tmp_path / "quillon.md"
    upload.write_text(FACT)
    page.set_input_files("#doc-upload input[type=file]", str(upload))
    page.wait_for_timeout(1000)
    page.click("#doc-upload-send")
    page.wait_for_function(
        "document.querySelector('#doc-results').innerText.includes('indexed with')", timeout=180_000
    )
    answer = ask(page, QUESTION)
    assert "Brandvold" in answer, answer
    assert 'data-source="uploads/quillon.md"' in page.inner_html("#sources")
    # The citation's link opens the document in the documents view.
    page.locator("#sources details.src").first.click()
    page.locator("#sources a.doc-link").first.click()
    page.wait_for_selector("#doc-view .doc-passage.cited", timeout=60_000)
    assert "Brandvold" in page.inner_text("#doc-view")
    page.click("#doc-remove")
    page.wait_for_function(
        "document.querySelector('#doc-notice').innerText.includes('Removed')", timeout=120_000
    )
    assert not (app.data_dir / "uploads" / "quillon.md").exists()
    # A new chat, so the question is not a follow-up of the answer that cited the upload.
    page.get_by_role("tab", name="Chat").click()
    page.click("#new-chat")
    assert REFUSED in ask(page, QUESTION)
    page.context.close()


def test_bad_files_each_get_their_message_and_change_nothing(browser: Any, app: App, tmp_path: Path) -> None:
    manifest = json.loads((app.data_dir / "manifest.json").read_text())["files"]
    uploads = app.data_dir / "uploads"
    kept = {p for p in uploads.rglob("*") if p.is_file()} if uploads.exists() else set()
    page = signed_in(browser, app, "ann", "s3cret")
    open_documents(page)
    files = {
        "big.md": b"# Big\n\n" + b"word " * 20_000,
        "tool.exe": b"MZ\x90\x00",
        "broken.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage",
        "empty.txt": b"",
    }
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    page.set_input_files("#doc-upload input[type=file]", paths)
    page.wait_for_timeout(1500)
    page.click("#doc-upload-send")
    page.wait_for_function(
        "document.querySelector('#doc-results').innerText.split('refused').length > 4", timeout=180_000
    )
    results = page.inner_text("#doc-results")
    assert "over the 0.05 MB limit" in results and ".exe is not a supported type" in results
    assert "not a readable PDF" in results and "empty" in results
    assert json.loads((app.data_dir / "manifest.json").read_text())["files"] == manifest
    assert {p for p in uploads.rglob("*") if p.is_file()} == kept
    page.context.close()
