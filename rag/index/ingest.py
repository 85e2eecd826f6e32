"""Incremental, crash-safe ingest: corpus folder -> chunks -> embeddings -> Chroma (+ BM25).

A content-hash manifest under the data directory (``rag.index.manifest``) records, per file,
its SHA-256 and the ids of its chunks. Re-running ingest skips unchanged files, replaces changed
ones and removes deleted ones. Chunk ids come from content, so a re-run after a crash upserts the
same ids (never duplicates), and a final reconciliation deletes any chunk the manifest does not
account for.
Only one ingest runs at a time: a file lock in the data directory, and a marker in the store
itself for writers on other machines (``rag.index.state``). Each run is counted in the metrics
and logged as one line (``rag.observability``).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document

from rag.config import Settings
from rag.index.documents import (
    FRONT_MATTER_KEYS,
    SUPPORTED_SUFFIXES,
    CorpusError,
    LoadError,
    SourceFile,
    discover,
    load_files,
)
from rag.index.embeddings import EmbeddingSpec, embedding_name, spec_of, use_bf16
from rag.index.lexical import LexicalIndex, fingerprint
from rag.index.manifest import Manifest
from rag.index.splitting import document_label, embed_text, split_document
from rag.index.state import IngestUnfinishedError, Writer, check_writer, mark_done, mark_writing
from rag.index.store import IndexProblem, drop_collection, make_client, open_collection
from rag.observability import INGEST_LOG, Metrics, log_event, new_request_id, process_metrics

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from langchain_core.embeddings import Embeddings

# Bump when loading or splitting changes in a way that must re-chunk every file (9: Wikipedia
# maintenance banners dropped at load; 10: front-matter dates and notes stored for the year check).
SPLITTER_VERSION = 10
FLUSH_CHUNKS = 256
# Uploaded documents (RAG_UPLOAD_DIR) are named with this prefix, so they never clash with a
# corpus file of the same name.
UPLOAD_PREFIX = "uploads/"

ingest_log = logging.getLogger(INGEST_LOG)


class IngestBusyError(IndexProblem):
    """Another ingest is running on the same data directory."""


@dataclass
class IngestReport:
    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_kept: int = 0
    chunks_total: int = 0
    errors: list[LoadError] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"{self.files_seen} files: {self.files_indexed} indexed, {self.files_unchanged}"
            f" unchanged, {self.files_removed} removed, {len(self.errors)} skipped",
            f"chunks: {self.chunks_added} added, {self.chunks_kept} kept,"
            f" {self.chunks_removed} removed, {self.chunks_total} in the index",
            f"time: {self.seconds:.1f} s",
        ]
        lines += [f"skipped {e.source}: {e.reason}" for e in self.errors]
        return "\n".join(lines)


@contextmanager
def ingest_lock(data_dir: Path) -> Iterator[None]:
    from filelock import FileLock, Timeout

    data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(data_dir / "ingest.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise IngestBusyError(
            "another ingest is already running on this data directory; wait for it to finish"
        ) from exc
    try:
        yield
    finally:
        lock.release()


def index_status(settings: Settings) -> str | None:
    """Why the index needs an ingest ("missing", "stale: ..."), or None when it is current.

    Cheap: hashes files and reads the manifest, loads no model.
    """
    manifest = Manifest.load(settings.manifest_path)
    if not manifest.files:
        return "missing"
    if manifest.model != embedding_name(settings):
        return "stale: embedding model changed"
    if manifest.splitter != _splitter_params(settings):
        return "stale: chunk or embedding settings changed"
    current = {f.source: f.sha256 for f in source_files(settings)}
    recorded = {s: e["sha256"] for s, e in manifest.files.items()}
    if current != recorded:
        return "stale: documents changed"
    return None


def source_files(
    settings: Settings, corpus_dir: Path | None = None, staged: Sequence[SourceFile] = ()
) -> list[SourceFile]:
    """What the index must hold: the corpus folder's files, the uploaded ones (named
    ``uploads/...``) and ``staged`` files (an upload being indexed, each already named as it will
    be once moved into the upload folder: it replaces a file of that name)."""
    files = {f.source: f for f in discover(corpus_dir or settings.corpus_dir)}
    if settings.uploads_dir.is_dir():
        files.update((f.source, f) for f in discover(settings.uploads_dir, UPLOAD_PREFIX))
    files.update((f.source, f) for f in staged)
    return [files[source] for source in sorted(files)]


def _splitter_params(settings: Settings) -> dict[str, int | str]:
    return {
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "embed_context": settings.embed_context,
        "version": SPLITTER_VERSION,
        # Vectors of another precision are close but not equal: mixing them would make rankings
        # depend on which files happened to be re-embedded.
        "precision": "bf16" if use_bf16(settings.embedding_precision) else "fp32",
    }


def ingest(
    settings: Settings,
    embeddings_factory: Callable[[], Embeddings],
    *,
    corpus_dir: Path | None = None,
    rebuild: bool = False,
    client: ClientAPI | None = None,
    progress: Callable[[int, int], None] | None = None,
    force: bool = False,
    metrics: Metrics | None = None,
    staged: Sequence[SourceFile] = (),
    before_done: Callable[[Manifest], None] | None = None,
) -> IngestReport:
    """Bring the index in line with the corpus and upload folders and report what changed.

    ``embeddings_factory`` is only called when something needs embedding, so an up-to-date
    re-run loads no model. ``progress(done, total)`` is called as chunks are embedded. Another
    ingest's unfinished marker in the store stops the run (``IngestUnfinishedError``) unless
    ``force``. The run is counted in ``metrics`` (the process's by default) and logged.
    ``staged`` files are indexed as if they were in the upload folder already, and
    ``before_done(manifest)`` runs after the last write, still under the lock (an upload moves
    its files into place there: ``rag.index.library``).
    """
    metrics = metrics or process_metrics()
    run_id = new_request_id()
    started = time.perf_counter()
    outcome = "ok"
    error_seen: BaseException | None = None
    report: IngestReport | None = None
    try:
        report = _ingest(
            settings, embeddings_factory, corpus_dir, rebuild, client, progress, force, staged, before_done
        )
        return report
    except IndexProblem as exc:
        # "busy": another run holds the lock or its marker is in the store (nothing written).
        busy = isinstance(exc, IngestBusyError | IngestUnfinishedError)
        outcome, error_seen = ("busy" if busy else "error"), exc
        raise
    except BaseException as exc:
        outcome, error_seen = "error", exc
        raise
    finally:
        seconds = time.perf_counter() - started
        event: dict[str, Any] = {
            "event": "ingest",
            "request_id": run_id,
            "host": socket.gethostname(),
            "outcome": outcome,
            "timings_ms": {"total": round(seconds * 1000, 1)},
        }
        if report is not None:
            event.update(
                files_seen=report.files_seen,
                files_indexed=report.files_indexed,
                files_unchanged=report.files_unchanged,
                files_removed=report.files_removed,
                files_skipped=len(report.errors),
                chunks_added=report.chunks_added,
                chunks_removed=report.chunks_removed,
                chunks_total=report.chunks_total,
            )
            metrics.index_size(report.chunks_total, report.files_seen - len(report.errors))
        if error_seen is not None:
            event["error"] = type(error_seen).__name__
        metrics.ingest_run(
            outcome,
            added=report.chunks_added if report else 0,
            removed=report.chunks_removed if report else 0,
        )
        summary = f"ingest {run_id}: {outcome} in {seconds:.1f} s"
        if report is not None:
            summary += f", {report.chunks_added} chunks added, {report.chunks_removed} removed"
        log_event(ingest_log, summary, event, logging.INFO if outcome == "ok" else logging.WARNING)


def _ingest(
    settings: Settings,
    embeddings_factory: Callable[[], Embeddings],
    corpus_dir: Path | None,
    rebuild: bool,
    client: ClientAPI | None,
    progress: Callable[[int, int], None] | None,
    force: bool,
    staged: Sequence[SourceFile] = (),
    before_done: Callable[[Manifest], None] | None = None,
) -> IngestReport:
    started = time.perf_counter()
    corpus = corpus_dir or settings.corpus_dir
    with ingest_lock(settings.data_dir):
        files = source_files(settings, corpus, staged)
        if not files:
            raise CorpusError(
                f"no supported documents in {corpus} (looked for {', '.join(SUPPORTED_SUFFIXES)});"
                " the existing index was left as it is"
            )
        client = client or make_client(settings)
        # Before any write (a rebuild's drop included): is another run writing to this store?
        existing = _existing_metadata(client, settings.collection)
        check_writer(existing, force=force)
        manifest = Manifest() if rebuild else Manifest.load(settings.manifest_path)
        splitter = _splitter_params(settings)
        model = embedding_name(settings)
        if manifest.files and (
            (manifest.splitter or {}).get("precision") != splitter["precision"] or manifest.model != model
        ):
            # Chunk ids hash the text, not the vectors: vectors of another precision or another
            # model (`rag tune` fine-tuned one) must all be replaced, or the index would mix them.
            rebuild = True
            manifest = Manifest()
        embeddings: Embeddings | None = None
        if rebuild or manifest.model != model or not manifest.dim:
            embeddings = embeddings_factory()
            spec = spec_of(settings, embeddings)
        else:
            spec = EmbeddingSpec(manifest.model, manifest.dim)
        if rebuild:
            drop_collection(client, settings.collection)
            settings.manifest_path.unlink(missing_ok=True)
        collection = open_collection(client, settings.collection, spec.name, spec.dim, create=True)
        mark_writing(collection, Writer.here())
        try:
            report, manifest = _write(
                settings,
                files,
                manifest,
                splitter,
                spec,
                collection,
                embeddings,
                embeddings_factory,
                progress,
            )
            if before_done is not None:
                before_done(manifest)
        except BaseException:
            try:
                mark_done(collection, None)  # this run stopped writing; the error says why
            except Exception:  # noqa: BLE001 - the store may be what failed: keep its error
                pass
            raise
        mark_done(collection, fingerprint(manifest.all_ids()))
    report.seconds = time.perf_counter() - started
    return report


def _existing_metadata(client: ClientAPI, name: str) -> dict[str, Any] | None:
    if name not in {c.name if hasattr(c, "name") else str(c) for c in client.list_collections()}:
        return None
    return dict(client.get_collection(name).metadata or {})


def _write(
    settings: Settings,
    files: list[Any],
    manifest: Manifest,
    splitter: dict[str, int | str],
    spec: EmbeddingSpec,
    collection: Collection,
    embeddings: Embeddings | None,
    embeddings_factory: Callable[[], Embeddings],
    progress: Callable[[int, int], None] | None,
) -> tuple[IngestReport, Manifest]:
    """The writing part of an ingest, between the store's marker going up and coming down; the
    report and the manifest it left."""
    if manifest.model != spec.name or manifest.splitter != splitter:
        # Another model or other chunk settings: every file must be split and embedded anew.
        manifest = Manifest(spec.name, spec.dim, splitter, {})
    report = IngestReport(files_seen=len(files))
    present = {f.source for f in files}
    changed = [f for f in files if manifest.files.get(f.source, {}).get("sha256") != f.sha256]
    report.files_unchanged = len(files) - len(changed)
    docs, report.errors = load_files(changed)

    chunked = [
        (doc, split_document(doc, settings.chunk_size, settings.chunk_overlap, settings.embed_context))
        for doc in docs
    ]
    total = sum(len(chunks) for _, chunks in chunked)
    done = 0
    for group in _groups(chunked, FLUSH_CHUNKS):
        embeddings = embeddings or embeddings_factory()
        done += _flush(group, collection, embeddings, manifest, settings, report)
        if progress:
            progress(done, total)

    for source in sorted(set(manifest.files) - present):
        old_ids = manifest.files.pop(source)["chunk_ids"]
        _delete(collection, old_ids)
        report.chunks_removed += len(old_ids)
        report.files_removed += 1
        manifest.save(settings.manifest_path)
    manifest.model, manifest.dim, manifest.splitter = spec.name, spec.dim, splitter
    manifest.save(settings.manifest_path)

    report.chunks_removed += _reconcile(collection, manifest)
    report.chunks_total = collection.count()
    report.chunks_kept = report.chunks_total - report.chunks_added
    sync_lexical(settings, collection, manifest)
    return report, manifest


def _groups(
    chunked: list[tuple[Document, list[Document]]], size: int
) -> Iterator[list[tuple[Document, list[Document]]]]:
    """Whole files grouped into batches of at least ``size`` chunks (the last may be smaller)."""
    group: list[tuple[Document, list[Document]]] = []
    count = 0
    for item in chunked:
        group.append(item)
        count += len(item[1])
        if count >= size:
            yield group
            group, count = [], 0
    if group:
        yield group


def _flush(
    pending: list[tuple[Document, list[Document]]],
    collection: Collection,
    embeddings: Embeddings,
    manifest: Manifest,
    settings: Settings,
    report: IngestReport,
) -> int:
    chunks = [c for _, cs in pending for c in cs]
    # Ids hash everything that is embedded, so a chunk already stored (a file edited elsewhere,
    # a re-run after a crash, new chunk settings that leave some chunks alike) keeps its vector.
    stored = set(collection.get(ids=[c.metadata["chunk_id"] for c in chunks], include=[])["ids"])
    kept = [c for c in chunks if c.metadata["chunk_id"] in stored]
    if kept:  # front matter (licence, URL, note) may have changed without touching the text
        # Chroma merges an update into the stored metadata: a key the front matter dropped is
        # sent as None to remove it (a deleted note's year would still count in the year check).
        collection.update(
            ids=[c.metadata["chunk_id"] for c in kept],
            metadatas=[{**_UNSET, **_chroma_metadata(c.metadata)} for c in kept],  # type: ignore[misc]
        )
    chunks = [c for c in chunks if c.metadata["chunk_id"] not in stored]
    texts = [embed_text(c, settings.embed_context) for c in chunks]
    vectors = embeddings.embed_documents(texts) if chunks else []
    ids = [c.metadata["chunk_id"] for c in chunks]
    metadatas = [_chroma_metadata(c.metadata) for c in chunks]
    batch = 5000  # below Chroma's max batch size
    for start in range(0, len(ids), batch):
        collection.upsert(
            ids=ids[start : start + batch],
            embeddings=vectors[start : start + batch],  # type: ignore[arg-type]
            documents=[c.page_content for c in chunks[start : start + batch]],
            metadatas=metadatas[start : start + batch],  # type: ignore[arg-type]
        )
    new_ids_all = set(ids)
    for doc, doc_chunks in pending:
        source = doc.metadata["source"]
        new_ids = [c.metadata["chunk_id"] for c in doc_chunks]
        old_ids = manifest.files.get(source, {}).get("chunk_ids", [])
        stale = sorted(set(old_ids) - set(new_ids))
        _delete(collection, stale)
        report.chunks_removed += len(stale)
        report.chunks_added += len(set(new_ids) & new_ids_all)
        report.files_indexed += 1
        manifest.files[source] = {
            "sha256": doc.metadata["sha256"],
            "chunk_ids": new_ids,
            "indexed": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    # Saved after the vectors are stored: a crash before this line only repeats the work.
    manifest.save(settings.manifest_path)
    return sum(len(cs) for _, cs in pending)


# What a chunk stores beside its text: where it is from, and the front matter its document has.
_STORED = ("source", "file_name", "section", "chunk_id", "chunk_index", *FRONT_MATTER_KEYS)
_UNSET: dict[str, None] = dict.fromkeys(_STORED)


def _chroma_metadata(meta: dict[str, Any]) -> dict[str, str | int]:
    return {k: meta[k] for k in _STORED if meta.get(k) not in (None, "")}


def _delete(collection: Collection, ids: list[str]) -> None:
    for start in range(0, len(ids), 5000):
        collection.delete(ids=ids[start : start + 5000])


def _reconcile(collection: Collection, manifest: Manifest) -> int:
    stored = set(collection.get(include=[])["ids"])
    strays = sorted(stored - manifest.all_ids())
    _delete(collection, strays)
    return len(strays)


def sync_lexical(
    settings: Settings,
    collection: Collection,
    manifest: Manifest | None,
    *,
    wanted: str | None = None,
    save: bool = True,
) -> tuple[LexicalIndex, LexicalIndex]:
    """The BM25 indexes of chunks and of whole documents (by title and byline), rebuilt unless
    they were built from exactly the chunks ``wanted`` names (default: the manifest's).

    ``save=False`` keeps a rebuilt index in memory only: app replicas that must not write
    (``RAG_INGEST_ON_START=false``) may share one data directory.
    """
    wanted = wanted or fingerprint(manifest.all_ids() if manifest else ())
    chunks = LexicalIndex.load(settings.bm25_dir)
    documents = LexicalIndex.load(settings.bm25_docs_dir)
    if chunks is not None and documents is not None and wanted == chunks.fingerprint == documents.fingerprint:
        return chunks, documents
    got = collection.get(include=["documents", "metadatas"])
    texts: list[str] = []
    labels: dict[str, str] = {}
    for doc, stored_meta in zip(got["documents"] or [], got["metadatas"] or [], strict=True):
        meta: dict[str, Any] = dict(stored_meta or {})
        texts.append(embed_text(Document(page_content=doc or "", metadata=meta)))
        labels.setdefault(str(meta.get("source", "")), document_label(meta))
    chunks = LexicalIndex.build(list(got["ids"]), texts, fingerprint_of=wanted)
    documents = LexicalIndex.build(list(labels), list(labels.values()), fingerprint_of=wanted)
    if save:
        chunks.save(settings.bm25_dir)
        documents.save(settings.bm25_docs_dir)
    return chunks, documents
