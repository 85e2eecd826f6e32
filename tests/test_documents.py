from __future__ import annotations

import io
from pathlib import Path

import pytest

from rag.index.documents import CorpusError, discover, load_files
from rag.index.splitting import CARD_SECTION, embed_text, split_document


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with ``text`` in Helvetica, written by hand (no PDF writer needed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def test_loads_every_supported_format(tmp_path: Path) -> None:
    import docx

    (tmp_path / "a.md").write_text(
        '---\ntitle: "Alpha"\nauthor: Ann\nlicense: CC0\n---\n# Alpha\n\nBody text.\n'
    )
    (tmp_path / "b.txt").write_text("Plain words here.\n")
    (tmp_path / "c.html").write_text(
        "<html><head><title>Gamma</title><script>alert(1)</script></head>"
        "<body><h2>Part</h2><p>Hyper text.</p></body></html>"
    )
    (tmp_path / "d.pdf").write_bytes(minimal_pdf("Portable words"))
    document = docx.Document()
    document.add_heading("Delta heading", level=1)
    document.add_paragraph("Word processor text.")
    document.save(tmp_path / "e.docx")

    docs, errors = load_files(discover(tmp_path))
    assert errors == []
    by_source = {d.metadata["source"]: d for d in docs}
    assert set(by_source) == {"a.md", "b.txt", "c.html", "d.pdf", "e.docx"}
    assert by_source["a.md"].metadata["title"] == "Alpha"
    assert by_source["a.md"].metadata["author"] == "Ann"
    assert by_source["a.md"].metadata["license"] == "CC0"
    assert "title:" not in by_source["a.md"].page_content
    assert by_source["c.html"].metadata["title"] == "Gamma"
    assert "alert" not in by_source["c.html"].page_content
    assert "## Part" in by_source["c.html"].page_content
    assert "Portable words" in by_source["d.pdf"].page_content
    assert "# Delta heading" in by_source["e.docx"].page_content
    assert by_source["b.txt"].metadata["file_name"] == "b.txt"


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("empty.md", b"", "empty"),
        ("blank.txt", b"   \n\n", "empty"),
        ("binary.txt", b"\x00\x01\x02binary", "binary"),
        ("latin1.md", "caf\xe9 cr\xe8me".encode("latin-1"), "UTF-8"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "PDF"),
        ("broken.docx", b"PK not a zip", "DOCX"),
    ],
)
def test_bad_files_are_reported_by_name_and_skipped(
    tmp_path: Path, name: str, payload: bytes, reason: str
) -> None:
    (tmp_path / "good.md").write_text("# Good\n\nFine text.\n")
    (tmp_path / name).write_bytes(payload)
    docs, errors = load_files(discover(tmp_path))
    assert [d.metadata["source"] for d in docs] == ["good.md"]
    assert len(errors) == 1 and errors[0].source == name
    assert reason.lower() in errors[0].reason.lower()


def test_missing_or_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        discover(tmp_path / "nope")
    assert discover(tmp_path) == []


def test_symlink_out_of_the_corpus_is_ignored(tmp_path: Path) -> None:
    outside = tmp_path / "secret.md"
    outside.write_text("# Secret\n\nDo not index.\n")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ok.md").write_text("# Ok\n\nIndexed.\n")
    (corpus / "link.md").symlink_to(outside)
    assert [f.source for f in discover(corpus)] == ["ok.md"]


def test_sources_file_is_not_a_document(tmp_path: Path) -> None:
    (tmp_path / "SOURCES.md").write_text("# Sources\n\nlist\n")
    (tmp_path / "doc.md").write_text("# Doc\n\ntext\n")
    assert [f.source for f in discover(tmp_path)] == ["doc.md"]


def test_split_by_headings_then_size_with_section_paths() -> None:
    from langchain_core.documents import Document

    body = "# Title\n\n## Economy\n\n### GDP\n\n" + " ".join(f"Sentence {i} about output." for i in range(60))
    doc = Document(page_content=body, metadata={"source": "x.md", "title": "Title"})
    chunks = split_document(doc, chunk_size=300, chunk_overlap=50)
    assert len(chunks) > 3
    assert all(c.metadata["section"] == "Economy > GDP" for c in chunks)
    assert all(len(c.page_content) <= 300 for c in chunks)
    assert embed_text(chunks[0]).startswith("Title > Economy > GDP\n")
    ids = [c.metadata["chunk_id"] for c in chunks]
    assert len(set(ids)) == len(ids)
    # Same content, same ids: the basis of incremental ingest.
    again = split_document(doc, chunk_size=300, chunk_overlap=50)
    assert [c.metadata["chunk_id"] for c in again] == ids


def test_dense_context_keeps_the_title_short_and_bm25_keeps_it_whole() -> None:
    from langchain_core.documents import Document

    from rag.index.splitting import TITLE_WORDS

    title = "22 U.S.C. Chapter 92 (Comprehensive Iran Sanctions, Accountability, and Divestment Act)"
    meta = {"source": "x.md", "title": title, "author": "A. Writer", "publication": "Weekly"}
    chunk = split_document(Document(page_content="## Findings\n\nText.", metadata=meta), 300, 0, "full")[-1]
    dense, full = embed_text(chunk, "title"), embed_text(chunk, "full")
    assert dense == " ".join(title.split()[:TITLE_WORDS]) + " > Findings\nText."
    assert "A. Writer" not in dense
    assert full.startswith(f"{title} (A. Writer, Weekly) > Findings\n")
    # Ids hash the dense text, so they follow what was embedded.
    titled = split_document(Document(page_content="## Findings\n\nText.", metadata=meta), 300, 0, "title")
    assert titled[-1].metadata["chunk_id"] != chunk.metadata["chunk_id"]


def test_front_matter_becomes_a_citable_card() -> None:
    from langchain_core.documents import Document

    doc = Document(
        page_content="# T\n\nBody.",
        metadata={"source": "t.md", "title": "T", "author": "Daniel DePetris", "published": "2016"},
    )
    card = split_document(doc, 500, 50)[0]
    assert card.metadata["section"] == CARD_SECTION
    assert "Written by Daniel DePetris" in card.page_content and "2016" in card.page_content


def test_wikipedia_maintenance_banners_are_dropped_and_the_prose_kept(tmp_path: Path) -> None:
    (tmp_path / "nsg.md").write_text(
        "# Nuclear Suppliers Group\n\n## History\n\n"
        "| This article **needs additional citations**. Please help\n"
        "improve this article by adding citations. _Find sources:_ news **·** books **·** JSTOR"
        " _(Learn how and when to remove this message)_\n---|---\n\n"
        "The NSG was founded in response to India's first nuclear weapon test in May\n1974.\n\n"
        "_(Learn how and when to remove these messages)_\n\nIt first met in November 1975.\n"
    )
    (tmp_path / "plain.md").write_text("# Plain\n\nPlease help yourself to the figures below.\n")
    docs, errors = load_files(discover(tmp_path))
    assert errors == []
    text = {d.metadata["source"]: d.page_content for d in docs}
    assert "JSTOR" not in text["nsg.md"] and "Learn how" not in text["nsg.md"]
    assert "India's first nuclear weapon test in May\n1974." in text["nsg.md"]
    assert "## History" in text["nsg.md"] and "It first met in November 1975." in text["nsg.md"]
    assert text["plain.md"].rstrip() == "# Plain\n\nPlease help yourself to the figures below."


def test_a_banner_inside_text_without_blank_lines_takes_only_its_own_lines(tmp_path: Path) -> None:
    prose = "\n".join(f"Paragraph {i} of the saved page says something about the NSG." for i in range(30))
    (tmp_path / "saved.txt").write_text(
        "Nuclear Suppliers Group\nThis article needs additional citations for verification. "
        "(Learn how and when to remove this message)\n" + prose + "\n"
    )
    docs, errors = load_files(discover(tmp_path))
    assert errors == [] and "Learn how" not in docs[0].page_content
    assert docs[0].page_content.startswith("Nuclear Suppliers Group\nParagraph 0 ")
    assert "Paragraph 29 of the saved page" in docs[0].page_content
