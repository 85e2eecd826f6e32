"""The documents service (``rag.index.library``): listing, passages, uploads and removal, with the
deterministic fake embeddings and a temporary corpus."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.answering import DocumentNotFoundError, Upload, open_assistant, open_library
from rag.config import Settings
from rag.index.ingest import index_status, ingest
from rag.index.lexical import LexicalIndex
from rag.index.library import STAGING, DocumentLibrary, may_change
from rag.index.manifest import Manifest
from rag.index.store import make_client
from tests.conftest import REPO, make_settings
from tests.fakes import HashingEmbeddings

FACT = "# Zephyr Notes\n\nThe zephyrometer of Lake Quillon was calibrated by Ottilie Brandvold in 1911.\n"
QUESTION = "Who calibrated the zephyrometer of Lake Quillon?"


class CountingEmbeddings(HashingEmbeddings):
    """Counts the texts it embeds, so a test can tell what was embedded again."""

    def __init__(self) -> None:
        super().__init__()
        self.texts = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.texts += len(texts)
        return super().embed_documents(texts)


def store_ids(settings: Settings) -> set[str]:
    return set(make_client(settings).get_collection(settings.collection).get(include=[])["ids"])


def sources_in_store(settings: Settings) -> set[str]:
    got = make_client(settings).get_collection(settings.collection).get(include=["metadatas"])
    return {str(m["source"]) for m in got["metadatas"] or []}


def assert_consistent(settings: Settings) -> None:
    """The store, the manifest and BM25 name the same chunks, and every manifest file exists."""
    manifest = Manifest.load(settings.manifest_path)
    assert store_ids(settings) == manifest.all_ids()
    lexical = LexicalIndex.load(settings.bm25_dir)
    assert lexical is not None and set(lexical.ids) == manifest.all_ids()
    library = DocumentLibrary(settings, embeddings_factory=HashingEmbeddings)
    for source in manifest.files:
        path = library.path_of(source)
        assert path is not None and path.is_file(), source


@pytest.fixture
def embeddings() -> CountingEmbeddings:
    return CountingEmbeddings()


@pytest.fixture
def library(settings: Settings, embeddings: CountingEmbeddings) -> DocumentLibrary:
    ingest(settings, lambda: embeddings)
    embeddings.texts = 0
    return DocumentLibrary(settings, embeddings_factory=lambda: embeddings)


def test_lists_every_document_with_what_is_known_of_it(settings: Settings, library: DocumentLibrary) -> None:
    docs = {d.source: d for d in library.documents()}
    assert set(docs) == {"article.md", "factbook.md", "notes.txt"}
    article = docs["article.md"]
    assert (article.title, article.author, article.publication) == (
        "Why Talk to Pyongyang",
        "Jane Writer",
        "The Test Gazette",
    )
    assert article.url == "https://example.org/article" and article.file_name == "article.md"
    assert docs["notes.txt"].url is None and docs["notes.txt"].author == ""
    manifest = Manifest.load(settings.manifest_path)
    for source, doc in docs.items():
        assert doc.chunks == len(manifest.files[source]["chunk_ids"])
        assert doc.indexed and doc.indexed.startswith("20") and not doc.uploaded


def test_passages_come_in_document_order(library: DocumentLibrary) -> None:
    passages = library.passages("factbook.md")
    assert [p.index for p in passages] == sorted(p.index for p in passages)
    sections = [p.section for p in passages]
    assert sections.index("Geography > Coastline") < sections.index("Economy > GDP")
    assert any(p.text == "2,495 km" for p in passages)
    with pytest.raises(DocumentNotFoundError):
        library.passages("nothing.md")


def test_an_upload_is_indexed_kept_and_survives_a_later_ingest(
    settings: Settings, library: DocumentLibrary, embeddings: CountingEmbeddings
) -> None:
    before = store_ids(settings)
    seen: list[tuple[int, int]] = []
    [result] = library.add([Upload("zephyr.md", FACT.encode())], progress=lambda d, t: seen.append((d, t)))
    assert result.ok and result.source == "uploads/zephyr.md" and result.chunks >= 1
    assert (
        result.message == f"zephyr.md: indexed with {result.chunks} chunk{'s' if result.chunks > 1 else ''}."
    )
    assert seen and seen[-1][0] == seen[-1][1] == result.chunks
    # Only the new file was embedded; everything indexed before is still there.
    assert embeddings.texts == result.chunks
    assert before < store_ids(settings)
    assert (settings.uploads_dir / "zephyr.md").read_text() == FACT
    assert not any((settings.uploads_dir / STAGING).iterdir())
    assert_consistent(settings)
    # `rag ingest` discovers the upload folder too: nothing to do, nothing dropped.
    assert index_status(settings) is None
    report = ingest(settings, lambda: embeddings)
    assert report.files_unchanged == 4 and report.chunks_added == report.chunks_removed == 0
    assert "uploads/zephyr.md" in {d.source for d in library.documents()}


def test_an_upload_of_the_same_name_replaces_the_old_one(
    settings: Settings, library: DocumentLibrary
) -> None:
    library.add([Upload("zephyr.md", FACT.encode())])
    old = set(Manifest.load(settings.manifest_path).files["uploads/zephyr.md"]["chunk_ids"])
    [result] = library.add([Upload("zephyr.md", b"# Zephyr\n\nRecalibrated in 1950 by someone else.\n")])
    assert result.ok
    new = set(Manifest.load(settings.manifest_path).files["uploads/zephyr.md"]["chunk_ids"])
    assert new and not (old & store_ids(settings)) and new <= store_ids(settings)
    assert_consistent(settings)


BROKEN_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage"


@pytest.mark.parametrize(
    ("name", "data", "problem", "fragment"),
    [
        ("big.md", b"# Big\n\n" + b"word " * 400, "too_large", "over the 0.001 MB limit (RAG_MAX_UPLOAD_MB)"),
        ("tool.exe", b"MZ\x90\x00", "unsupported", ".exe is not a supported type"),
        ("README", b"hello", "unsupported", "without an extension"),
        ("empty.md", b"", "empty", "the file is empty"),
        ("blank.txt", b"   \n\n", "empty", "the file is empty"),
        ("broken.pdf", BROKEN_PDF, "unreadable", "not a readable PDF"),
        ("broken.docx", b"PK\x03\x04 not really a zip", "unreadable", "not a readable DOCX"),
        ("../../x.md", FACT.encode(), "bad_name", "tries to leave the upload folder"),
        ("a/b.md", FACT.encode(), "bad_name", "tries to leave the upload folder"),
        ("..\\x.md", FACT.encode(), "bad_name", "tries to leave the upload folder"),
        (".hidden.md", FACT.encode(), "bad_name", "not a usable file name"),
    ],
)
def test_bad_files_are_refused_with_their_reason_and_change_nothing(
    settings: Settings, embeddings: CountingEmbeddings, name: str, data: bytes, problem: str, fragment: str
) -> None:
    ingest(settings, lambda: embeddings)
    small = settings.model_copy(update={"max_upload_mb": 0.001})
    library = DocumentLibrary(small, embeddings_factory=lambda: embeddings)
    before, manifest = store_ids(settings), settings.manifest_path.read_text()
    [result] = library.add([Upload(name, data)])
    assert not result.ok and result.problem == problem and result.source is None
    assert fragment in result.message and result.message.startswith(f"{name}: refused")
    assert store_ids(settings) == before and settings.manifest_path.read_text() == manifest
    uploads = settings.uploads_dir
    assert not uploads.exists() or not [p for p in uploads.rglob("*") if p.is_file()]
    assert not (settings.data_dir.parent / "x.md").exists()


def test_good_and_bad_files_in_one_batch_each_get_their_line(library: DocumentLibrary) -> None:
    results = library.add(
        [Upload("tool.exe", b"MZ"), Upload("zephyr.md", FACT.encode()), Upload("empty.txt", b"")]
    )
    assert [(r.name, r.ok) for r in results] == [
        ("tool.exe", False),
        ("zephyr.md", True),
        ("empty.txt", False),
    ]


def test_an_upload_from_a_temporary_file(
    settings: Settings, library: DocumentLibrary, tmp_path: Path
) -> None:
    spooled = tmp_path / "gradio-tmp" / "zephyr.md"
    spooled.parent.mkdir()
    spooled.write_text(FACT)
    [result] = library.add([Upload("zephyr.md", path=spooled)])
    assert result.ok and (settings.uploads_dir / "zephyr.md").read_text() == FACT


def test_removing_a_document_deletes_its_chunks_bm25_entries_and_file(
    settings: Settings, library: DocumentLibrary
) -> None:
    [result] = library.add([Upload("zephyr.md", FACT.encode())])
    ids = set(Manifest.load(settings.manifest_path).files["uploads/zephyr.md"]["chunk_ids"])
    assert library.remove("uploads/zephyr.md") == len(ids) == result.chunks
    assert not (ids & store_ids(settings))
    lexical = LexicalIndex.load(settings.bm25_dir)
    assert lexical is not None and not (ids & set(lexical.ids))
    assert not (settings.uploads_dir / "zephyr.md").exists()
    assert "uploads/zephyr.md" not in {d.source for d in library.documents()}
    assert_consistent(settings)
    # A corpus document can be removed too (its file goes with it).
    library.remove("notes.txt")
    assert not (settings.corpus_dir / "notes.txt").exists() and "notes.txt" not in sources_in_store(settings)
    assert index_status(settings) is None


@pytest.mark.parametrize(
    "source", ["nothing.md", "uploads/nothing.md", "../corpus/article.md", "/etc/passwd"]
)
def test_removing_an_unknown_document_is_not_found(
    settings: Settings, library: DocumentLibrary, source: str
) -> None:
    before = store_ids(settings)
    with pytest.raises(DocumentNotFoundError):
        library.remove(source)
    assert store_ids(settings) == before


def test_a_question_asked_while_an_upload_is_indexing_is_answered_from_the_index_as_it_was(
    settings: Settings,
) -> None:
    embeddings = HashingEmbeddings()
    assistant = open_assistant(settings, embeddings=embeddings, ensure_index=True)
    library = open_library(settings, embeddings=embeddings, assistant=assistant)
    during: list[set[str]] = []

    def ask_meanwhile(done: int, total: int) -> None:
        # The new chunks are in Chroma now, the upload not finished.
        assert "uploads/zephyr.md" in sources_in_store(settings)
        answer = assistant.ask(QUESTION)
        during.append({p.source for p in answer.retrieved})

    [result] = library.add([Upload("zephyr.md", FACT.encode())], progress=ask_meanwhile)
    assert result.ok and during and all("uploads/zephyr.md" not in s for s in during)
    assert assistant.status["documents"] == 4
    answer = assistant.ask(QUESTION)
    assert "uploads/zephyr.md" in {c.passage.source for c in answer.citations}
    library.remove("uploads/zephyr.md")
    assert "uploads/zephyr.md" not in {p.source for p in assistant.ask(QUESTION).retrieved}


KILLED_UPLOAD = """
import os, sys
from pathlib import Path
from rag.config import Settings
from rag.index.library import DocumentLibrary, Upload
from tests.fakes import HashingEmbeddings

settings = Settings(_env_file=None, corpus_dir=Path(sys.argv[1]), data_dir=Path(sys.argv[2]))
library = DocumentLibrary(settings, embeddings_factory=HashingEmbeddings)
# Killed right after the new chunks and the manifest naming them were written, before the file
# is moved into the upload folder and before BM25 and the store's marker are brought up to date.
library.add([Upload("zephyr.md", sys.argv[3].encode())], progress=lambda done, total: os._exit(9))
"""


def test_an_upload_killed_while_indexing_leaves_the_index_consistent_after_a_restart(
    settings: Settings,
) -> None:
    ingest(settings, HashingEmbeddings)
    before = store_ids(settings)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(KILLED_UPLOAD),
            str(settings.corpus_dir),
            str(settings.data_dir),
            FACT,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 9, run.stderr
    # Killed halfway: the store holds chunks of a file that is not in the upload folder.
    assert store_ids(settings) > before and not (settings.uploads_dir / "zephyr.md").exists()
    assert index_status(settings) is not None
    # A restart (the app opens its index with ensure_index) brings everything back in line.
    assistant = open_assistant(settings, embeddings=HashingEmbeddings(), ensure_index=True)
    assert store_ids(settings) == before
    assert_consistent(settings)
    assert assistant.status["documents"] == 3
    assert "uploads/zephyr.md" not in {p.source for p in assistant.ask(QUESTION).retrieved}
    # The next upload clears what the killed one left staged, and works.
    library = DocumentLibrary(settings, embeddings_factory=HashingEmbeddings)
    [result] = library.add([Upload("zephyr.md", FACT.encode())])
    assert result.ok and [p.name for p in (settings.uploads_dir / STAGING).iterdir()] == []
    assert_consistent(settings)


def test_who_may_upload_and_remove(tmp_path: Path) -> None:
    users = ["ann:secret", "bob:pw"]
    admins = make_settings(tmp_path, auth=users, admins=["ann"])
    assert may_change(admins, "ann") and not may_change(admins, "bob") and not may_change(admins, None)
    # With users configured, RAG_ALLOW_UPLOADS does not open uploads to everyone.
    assert not may_change(make_settings(tmp_path, auth=users, allow_uploads=True), "bob")
    assert not may_change(make_settings(tmp_path), None)
    assert may_change(make_settings(tmp_path, allow_uploads=True), None)
    assert may_change(make_settings(tmp_path, allow_uploads=True, host="::1"), None)
    assert not may_change(make_settings(tmp_path, allow_uploads=True, host="0.0.0.0"), None)
    with pytest.raises(ValidationError, match="RAG_ADMINS names users that RAG_AUTH does not list: carl"):
        make_settings(tmp_path, auth=users, admins=["carl"])


def test_uploads_live_in_the_upload_folder_setting(tmp_path: Path) -> None:
    assert make_settings(tmp_path).uploads_dir == tmp_path / "data" / "uploads"
    assert make_settings(tmp_path, upload_dir=tmp_path / "up").uploads_dir == tmp_path / "up"
