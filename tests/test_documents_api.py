"""``/api/documents`` (``rag.web.documents_api``) through FastAPI's TestClient: listing, reading,
uploading and removing, every status (401, 403, 400, 404, 409, 413, 415, 503), over the real
documents service with the fake embeddings; and the documents view's callbacks
(``rag.web.documents``) and rendering."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rag.answering import DocumentLibrary, IngestBusyError
from rag.config import Settings
from rag.index.ingest import ingest
from rag.index.manifest import Manifest
from rag.web.api import ApiState, install_error_handlers
from rag.web.documents import DocumentsView
from rag.web.documents_api import documents_router
from rag.web.render import document_html, documents_html, sources_html
from tests.conftest import make_settings
from tests.fakes import HashingEmbeddings, write_corpus

ADMIN = ("ann", "s3cret")
READER = ("bob", "pw")
FACT = b"# Zephyr Notes\n\nThe zephyrometer of Lake Quillon was calibrated by Ottilie Brandvold in 1911.\n"


def make_library(tmp_path: Path, **overrides: Any) -> tuple[Settings, DocumentLibrary]:
    write_corpus(tmp_path / "corpus")
    settings = make_settings(
        tmp_path, auth=[":".join(ADMIN), ":".join(READER)], admins=["ann"], max_upload_mb=0.01, **overrides
    )
    embeddings = HashingEmbeddings()
    ingest(settings, lambda: embeddings)
    return settings, DocumentLibrary(settings, embeddings_factory=lambda: embeddings)


def client_for(settings: Settings, library: DocumentLibrary | None, problem: str | None = None) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(documents_router(ApiState(settings, None, problem=problem, library=library)))
    return TestClient(app)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Settings, DocumentLibrary, TestClient]]:
    settings, library = make_library(tmp_path)
    with client_for(settings, library) as client:
        yield settings, library, client


def test_lists_the_documents(served: tuple[Settings, DocumentLibrary, TestClient]) -> None:
    _, _, client = served
    body = client.get("/api/documents", auth=READER).json()
    assert body["count"] == 3 and body["may_change"] is False
    article = next(d for d in body["documents"] if d["source"] == "article.md")
    assert article["author"] == "Jane Writer" and article["url"] == "https://example.org/article"
    assert client.get("/api/documents", auth=ADMIN).json()["may_change"] is True


def test_reads_one_document_in_order(served: tuple[Settings, DocumentLibrary, TestClient]) -> None:
    _, _, client = served
    body = client.get("/api/documents/factbook.md", auth=READER).json()
    assert body["document"]["title"] == "Factbook: Korea, North"
    assert [p["index"] for p in body["passages"]] == sorted(p["index"] for p in body["passages"])
    missing = client.get("/api/documents/nothing.md", auth=READER)
    assert missing.status_code == 404 and "GET /api/documents lists them" in missing.json()["error"]


def test_an_admin_uploads_then_removes(served: tuple[Settings, DocumentLibrary, TestClient]) -> None:
    settings, _, client = served
    response = client.post("/api/documents", files={"files": ("zephyr.md", FACT)}, auth=ADMIN)
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["ok"] and result["source"] == "uploads/zephyr.md" and result["chunks"] >= 1
    assert (settings.uploads_dir / "zephyr.md").read_bytes() == FACT
    listed = {d["source"] for d in client.get("/api/documents", auth=READER).json()["documents"]}
    assert "uploads/zephyr.md" in listed
    gone = client.delete("/api/documents/uploads/zephyr.md", auth=ADMIN)
    assert gone.status_code == 200 and gone.json() == {
        "removed": "uploads/zephyr.md",
        "chunks": result["chunks"],
    }
    assert not (settings.uploads_dir / "zephyr.md").exists()
    assert "uploads/zephyr.md" not in Manifest.load(settings.manifest_path).files
    again = client.delete("/api/documents/uploads/zephyr.md", auth=ADMIN)
    assert again.status_code == 404


def test_mixed_uploads_answer_200_with_a_line_per_file(
    served: tuple[Settings, DocumentLibrary, TestClient],
) -> None:
    _, _, client = served
    files = [("files", ("zephyr.md", FACT)), ("files", ("tool.exe", b"MZ"))]
    response = client.post("/api/documents", files=files, auth=ADMIN)
    assert response.status_code == 200
    assert [(r["name"], r["ok"], r["problem"]) for r in response.json()["results"]] == [
        ("zephyr.md", True, None),
        ("tool.exe", False, "unsupported"),
    ]


@pytest.mark.parametrize(
    ("name", "data", "status", "fragment"),
    [
        ("big.md", b"# Big\n\n" + b"word " * 4000, 413, "over the 0.01 MB limit"),
        ("tool.exe", b"MZ\x90\x00", 415, ".exe is not a supported type"),
        ("empty.md", b"", 400, "the file is empty"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage", 400, "not a readable PDF"),
        ("../../x.md", FACT, 400, "tries to leave the upload folder"),
    ],
)
def test_refused_uploads_get_their_status_and_message(
    served: tuple[Settings, DocumentLibrary, TestClient], name: str, data: bytes, status: int, fragment: str
) -> None:
    settings, _, client = served
    before = Manifest.load(settings.manifest_path).files
    response = client.post("/api/documents", files={"files": (name, data)}, auth=ADMIN)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and fragment in body["error"] and not body["results"][0]["ok"]
    assert Manifest.load(settings.manifest_path).files == before


def test_who_may_change_documents(served: tuple[Settings, DocumentLibrary, TestClient]) -> None:
    settings, _, client = served
    forbidden = client.post("/api/documents", files={"files": ("zephyr.md", FACT)}, auth=READER)
    assert forbidden.status_code == 403 and "RAG_ADMINS" in forbidden.json()["error"]
    assert client.delete("/api/documents/article.md", auth=READER).status_code == 403
    assert client.get("/api/documents").status_code == 401
    assert client.post("/api/documents", files={"files": ("zephyr.md", FACT)}).status_code == 401
    assert not settings.uploads_dir.exists() or not (settings.uploads_dir / "zephyr.md").exists()


def test_without_users_uploads_are_off_unless_allowed_on_loopback(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "a")
    write_corpus(settings.corpus_dir)
    library = DocumentLibrary(settings, embeddings_factory=HashingEmbeddings)
    ingest(settings, HashingEmbeddings)
    with client_for(settings, library) as client:
        response = client.post("/api/documents", files={"files": ("zephyr.md", FACT)})
        assert response.status_code == 403 and "RAG_ALLOW_UPLOADS" in response.json()["error"]
    open_settings = settings.model_copy(update={"allow_uploads": True})
    with client_for(
        open_settings, DocumentLibrary(open_settings, embeddings_factory=HashingEmbeddings)
    ) as client:
        assert client.post("/api/documents", files={"files": ("zephyr.md", FACT)}).status_code == 200


def test_bad_requests(served: tuple[Settings, DocumentLibrary, TestClient]) -> None:
    _, _, client = served
    not_multipart = client.post("/api/documents", json={"files": []}, auth=ADMIN)
    assert not_multipart.status_code == 415 and "multipart/form-data" in not_multipart.json()["error"]
    no_files = client.post("/api/documents", data={"other": "x"}, files={"x": ("a.md", b"")}, auth=ADMIN)
    assert no_files.status_code == 400 and "No files were sent" in no_files.json()["error"]


class BusyLibrary(DocumentLibrary):
    def add(self, uploads: Any, progress: Any = None) -> Any:
        raise IngestBusyError("busy")

    def remove(self, source: str) -> int:
        raise IngestBusyError("busy")


def test_another_ingest_running_is_409_and_no_index_is_503(tmp_path: Path) -> None:
    settings, _ = make_library(tmp_path)
    with client_for(settings, BusyLibrary(settings, embeddings_factory=HashingEmbeddings)) as client:
        assert client.post("/api/documents", files={"files": ("z.md", FACT)}, auth=ADMIN).status_code == 409
        assert client.delete("/api/documents/article.md", auth=ADMIN).status_code == 409
    with client_for(settings, None, problem="no index: run `rag ingest`") as client:
        response = client.get("/api/documents", auth=READER)
        assert response.status_code == 503 and "rag ingest" in response.json()["error"]


# -- the documents view ---------------------------------------------------------------------------


def test_the_view_lists_filters_opens_uploads_and_removes(tmp_path: Path) -> None:
    settings, library = make_library(tmp_path)
    view = DocumentsView(library)
    assert view.may_change("ann") and not view.may_change("bob")
    table = view.table()
    assert table.count("<tr data-source=") == 3 and "3 documents" in table
    filtered = view.table("pyongyang")
    assert filtered.count("<tr data-source=") == 1 and "1 of 3 documents" in filtered
    opened = view.open('{"source": "factbook.md", "chunk": ""}')
    assert opened.source == "factbook.md" and opened.html.index("Coastline") < opened.html.index("GDP")
    assert view.open("nothing.md").notice and not view.open("nothing.md").source
    upload = tmp_path / "tmp" / "zephyr.md"
    upload.parent.mkdir()
    upload.write_bytes(FACT)
    assert view.upload([upload], "bob") == "Only administrators (RAG_ADMINS) may add documents."
    lines = view.upload([upload, tmp_path / "tmp" / "zephyr.md"], "ann")
    assert "✅ zephyr\\.md\\: indexed with" in lines and "same name" in lines
    assert "zephyr" in view.table("zephyr")
    assert view.remove("uploads/zephyr.md", "bob").startswith("Only administrators")
    assert view.remove("uploads/zephyr.md", "ann").startswith("Removed uploads")
    assert "zephyr" not in view.table() and not (settings.uploads_dir / "zephyr.md").exists()


def test_documents_are_rendered_escaped() -> None:
    evil = {
        "source": "uploads/<x>.md",
        "title": "<script>alert(1)</script>",
        "file_name": "<x>.md",
        "author": "<b>me</b>",
        "publication": "",
        "chunks": 2,
        "indexed": "2026-11-28T14:00:00+00:00",
        "url": "javascript:alert(1)",
    }
    table = documents_html([evil])
    assert "<script>" not in table and "&lt;script&gt;" in table and "javascript:" not in table
    assert 'data-source="uploads/&lt;x&gt;.md"' in table and "2026-11-28 14:00" in table
    passages = [
        {"index": 0, "section": "<i>S</i>", "text": "a <img src=x onerror=alert(1)>", "chunk_id": "c1"}
    ]
    page = document_html(evil, passages, cited="c1")
    assert "<img" not in page and "<mark>a &lt;img" in page and 'class="src doc-passage cited"' in page


def test_a_citation_links_to_its_document() -> None:
    turns = [
        {
            "question": "q",
            "answer": {
                "citations": [
                    {
                        "n": 1,
                        "source": "factbook.md",
                        "chunk_id": "abc",
                        "title": "F",
                        "text": "t",
                        "quote": "t",
                    }
                ]
            },
        }
    ]
    html = sources_html(turns)
    assert 'class="doc-link" href="#documents" data-source="factbook.md" data-chunk="abc"' in html
