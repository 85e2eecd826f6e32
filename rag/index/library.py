"""The documents the index holds, seen and changed one at a time: list them, read one's passages
in order, add uploaded files, remove a document.

Adding and removing go through the ingest's own machinery (``rag.index.ingest``): the same file
lock, the same manifest and marker in the store, chunk ids from content, so nothing that did not
change is embedded again and a later ``rag ingest`` finds the index as it left it. Uploaded files
live in ``RAG_UPLOAD_DIR`` (named ``uploads/<file>`` in the index) and are indexed with the corpus
from then on::

    library = DocumentLibrary(settings, embeddings_factory=lambda: embeddings)
    [result] = library.add([Upload("notes.md", b"# Notes\\n\\nThe fact.")])
    result.ok, result.source, result.chunks          # (True, 'uploads/notes.md', 1)
    library.remove("uploads/notes.md")

An upload is written under a hidden folder of the upload folder, checked, indexed, and only
then moved into place: a process killed halfway leaves chunks the manifest names for a file that
is not there, which the next ingest (or upload) removes, and nothing that was indexed before.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from rag.config import Settings
from rag.index.documents import SUPPORTED_SUFFIXES, SourceFile, load_file
from rag.index.ingest import (
    UPLOAD_PREFIX,
    IngestBusyError,
    IngestReport,
    ingest,
    ingest_lock,
    sync_lexical,
)
from rag.index.lexical import fingerprint
from rag.index.manifest import Manifest
from rag.index.state import Writer, check_writer, mark_done, mark_writing
from rag.index.store import IndexMissingError, IndexProblem, make_client

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from langchain_core.embeddings import Embeddings

log = logging.getLogger(__name__)

# The types the page offers; .markdown and .htm are the same loaders under other names.
UPLOAD_SUFFIXES = SUPPORTED_SUFFIXES
# Where an upload waits until it is indexed: hidden, so no ingest ever picks it up half-written.
STAGING = ".incoming"
MAX_NAME_CHARS = 200


class DocumentNotFoundError(IndexProblem):
    """No indexed document has that name."""


@dataclass(frozen=True)
class Upload:
    """A file to add: its name as the user's machine gave it, and either its bytes or the path of
    a temporary copy (what web frameworks hand over)."""

    name: str
    data: bytes | None = None
    path: Path | None = None
    # The size a server saw before reading a file it will refuse as too large.
    declared_size: int | None = None

    def size(self) -> int:
        if self.declared_size is not None:
            return self.declared_size
        if self.data is not None:
            return len(self.data)
        return self.path.stat().st_size if self.path is not None else 0


@dataclass(frozen=True)
class UploadResult:
    """What became of one uploaded file. ``problem`` names the kind of refusal (``bad_name``,
    ``unsupported``, ``too_large``, ``empty``, ``unreadable``, ``failed``); ``message`` is the line
    shown to the user."""

    name: str
    ok: bool
    message: str
    source: str | None = None
    chunks: int = 0
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DocumentInfo:
    """One indexed document, as the documents view and ``GET /api/documents`` list it."""

    source: str
    title: str
    file_name: str
    author: str
    publication: str
    chunks: int
    indexed: str | None
    url: str | None
    uploaded: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DocumentPassage:
    """One passage of a document, in document order."""

    index: int
    section: str
    text: str
    chunk_id: str = ""


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be an upload's file name (None when it can): it must be a plain file
    name, with no folder in it, so no upload can be written outside the upload folder.

    >>> check_name("notes.md") is None
    True
    >>> check_name("../../x.md")
    'the name ../../x.md tries to leave the upload folder; send a plain file name'
    """
    if not name or not name.strip():
        return "the file has no name"
    if (
        "/" in name
        or "\\" in name
        or name in (".", "..")
        or PurePosixPath(name).name != name
        or PureWindowsPath(name).name != name
    ):
        return f"the name {name} tries to leave the upload folder; send a plain file name"
    if name.startswith(".") or any(ord(ch) < 32 or ch == "\x7f" for ch in name):
        return f"{name!r} is not a usable file name (hidden or with control characters)"
    if len(name) > MAX_NAME_CHARS:
        return f"the name is longer than {MAX_NAME_CHARS} characters"
    return None


class DocumentLibrary:
    """The documents service over the index of ``settings``.

    ``embeddings_factory`` is called only when an upload has something to embed (front ends hand
    in the model the answerer already loaded); ``on_change`` runs after a document was added or
    removed (the answering side reloads its index: until then questions are answered from the
    index as it was). ``client`` defaults to the store the settings name.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        embeddings_factory: Callable[[], Embeddings],
        on_change: Callable[[], object] | None = None,
        client: ClientAPI | None = None,
    ) -> None:
        self.settings = settings
        self.embeddings_factory = embeddings_factory
        self.on_change = on_change
        self._client = client

    def may_change(self, user: str | None) -> bool:
        """Whether ``user`` may upload and remove documents (``may_change``)."""
        return may_change(self.settings, user)

    # -- reading -------------------------------------------------------------------------------

    def _collection(self) -> Collection:
        if self._client is None:
            self._client = make_client(self.settings)
        try:
            return self._client.get_collection(self.settings.collection)
        except Exception as exc:  # chromadb raises its own NotFoundError (or ValueError)
            raise IndexMissingError("the index has not been built yet: run `rag ingest` first") from exc

    def documents(self) -> list[DocumentInfo]:
        """Every indexed document, in title order, read from the store (so a replica without the
        writer's data directory lists the same); when each was indexed comes from the manifest."""
        got = self._collection().get(include=["metadatas"])
        counts: dict[str, int] = {}
        first: dict[str, tuple[int, dict[str, Any]]] = {}
        for stored in got.get("metadatas") or []:
            meta: dict[str, Any] = dict(stored or {})
            source = str(meta.get("source") or "")
            if not source:
                continue
            counts[source] = counts.get(source, 0) + 1
            index = int(meta.get("chunk_index") or 0)
            if source not in first or index < first[source][0]:
                first[source] = (index, meta)
        manifest = Manifest.load(self.settings.manifest_path).files
        out = []
        for source, (_, meta) in first.items():
            url = str(meta.get("source_url") or "") or None
            out.append(
                DocumentInfo(
                    source=source,
                    title=str(meta.get("title") or source),
                    file_name=str(meta.get("file_name") or PurePosixPath(source).name),
                    author=str(meta.get("author") or ""),
                    publication=str(meta.get("publication") or ""),
                    chunks=counts[source],
                    indexed=(manifest.get(source) or {}).get("indexed"),
                    url=url,
                    uploaded=source.startswith(UPLOAD_PREFIX),
                )
            )
        return sorted(out, key=lambda d: (d.title.lower(), d.source))

    def passages(self, source: str) -> list[DocumentPassage]:
        """The passages of document ``source`` in document order; ``DocumentNotFoundError`` when
        no document has that name."""
        got = self._collection().get(where={"source": source}, include=["documents", "metadatas"])
        rows: list[tuple[int, str, str, str]] = []
        for chunk_id, text, stored in zip(
            got["ids"], got.get("documents") or [], got.get("metadatas") or [], strict=True
        ):
            meta: dict[str, Any] = dict(stored or {})
            rows.append(
                (int(meta.get("chunk_index") or 0), str(meta.get("section") or ""), str(text or ""), chunk_id)
            )
        if not rows:
            raise DocumentNotFoundError(f"no indexed document is named {source!r}")
        return [DocumentPassage(i, section, text, chunk_id) for i, section, text, chunk_id in sorted(rows)]

    # -- adding ----------------------------------------------------------------------------------

    def check(self, upload: Upload) -> UploadResult | None:
        """The refusal of ``upload`` before anything is written (None when it may be indexed):
        its name, type and size. Whether it can be read is checked once it is staged."""
        name = upload.name
        if (reason := check_name(name)) is not None:
            return UploadResult(name, False, f"{name}: refused, {reason}.", problem="bad_name")
        suffix = PurePosixPath(name).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            kinds = ", ".join(s for s in UPLOAD_SUFFIXES)
            return UploadResult(
                name,
                False,
                f"{name}: refused, {suffix or 'a file without an extension'} is not a supported type"
                f" (send {kinds}).",
                problem="unsupported",
            )
        size = upload.size()
        limit = int(self.settings.max_upload_mb * 1024 * 1024)
        if size > limit:
            return UploadResult(
                name,
                False,
                f"{name}: refused, {size / 1024 / 1024:.1f} MB is over the {self.settings.max_upload_mb:g} MB"
                " limit (RAG_MAX_UPLOAD_MB).",
                problem="too_large",
            )
        if size == 0:
            return UploadResult(name, False, f"{name}: refused, the file is empty.", problem="empty")
        return None

    def add(
        self, uploads: Iterable[Upload], progress: Callable[[int, int], None] | None = None
    ) -> list[UploadResult]:
        """Index ``uploads`` and keep them in the upload folder; one result per file, in order.

        Files are checked (name, type, size, then whether they can be read), staged, indexed
        incrementally under the ingest lock (``progress(done, total)`` as chunks are embedded),
        and moved into the upload folder. ``IngestBusyError`` when another ingest is running
        (nothing written); a failure while indexing leaves the index as it was before.
        """
        uploads = list(uploads)
        results: dict[int, UploadResult] = {}
        folder = self.settings.uploads_dir
        staging = folder / STAGING
        accepted: dict[str, tuple[int, Upload]] = {}
        for i, upload in enumerate(uploads):
            refusal = self.check(upload)
            if refusal is not None:
                results[i] = refusal
            else:
                accepted[UPLOAD_PREFIX + upload.name] = (i, upload)  # the last of one name wins
        for i, upload in enumerate(uploads):
            if i not in results and accepted.get(UPLOAD_PREFIX + upload.name, (i,))[0] != i:
                results[i] = UploadResult(
                    upload.name,
                    False,
                    f"{upload.name}: skipped, a later file has the same name.",
                    problem="bad_name",
                )
        if accepted:
            staging.mkdir(parents=True, exist_ok=True)
            _clear_dead_batches(staging)
            batch = Path(tempfile.mkdtemp(prefix=f"upload-{os.getpid()}-", dir=staging))
            try:
                staged = self._stage(batch, accepted, results)
                if staged:
                    report = self._index(staged, batch, progress)
                    results.update(self._outcome(accepted, staged, report))
            finally:
                shutil.rmtree(batch, ignore_errors=True)
        return [results[i] for i in range(len(uploads))]

    def _stage(
        self, batch: Path, accepted: dict[str, tuple[int, Upload]], results: dict[int, UploadResult]
    ) -> list[SourceFile]:
        """Write the accepted files under ``batch`` and load each once: what cannot be read is
        refused here, before the index is touched."""
        import hashlib

        staged: list[SourceFile] = []
        for source, (i, upload) in accepted.items():
            path = batch / upload.name
            if upload.data is not None:
                path.write_bytes(upload.data)
            elif upload.path is not None:
                shutil.copyfile(upload.path, path)
            file = SourceFile(path, source, hashlib.sha256(path.read_bytes()).hexdigest())
            try:
                load_file(file)
            except Exception as exc:  # noqa: BLE001 - any parser failure is this file's refusal
                reason = str(exc) or type(exc).__name__
                kind = "empty" if "empty" in reason or "no text" in reason else "unreadable"
                results[i] = UploadResult(
                    upload.name, False, f"{upload.name}: refused, {reason}.", problem=kind
                )
                continue
            staged.append(file)
        return staged

    def _index(
        self, staged: list[SourceFile], batch: Path, progress: Callable[[int, int], None] | None
    ) -> IngestReport:
        folder = self.settings.uploads_dir

        def move_into_place(manifest: Manifest) -> None:
            # After the last write to the store and before its marker comes down: killed before a
            # move, the next ingest finds the manifest naming a file that is not there and removes
            # its chunks; killed after, the file is where the manifest says.
            for file in staged:
                if file.source in manifest.files:
                    target = folder / file.source.removeprefix(UPLOAD_PREFIX)
                    os.replace(file.path, target)
            _fsync_dir(folder)

        try:
            report = ingest(
                self.settings,
                self.embeddings_factory,
                client=self._client,
                progress=progress,
                staged=staged,
                before_done=move_into_place,
            )
        except IngestBusyError:
            raise  # nothing was written
        except Exception:
            # Chunks of the staged files may be in the store: an ingest without them takes them
            # out again now, as the next start would.
            try:
                ingest(self.settings, self.embeddings_factory, client=self._client)
            except Exception as exc:  # noqa: BLE001 - the first error is the one to report
                log.warning("could not tidy the index after a failed upload: %s", exc)
            raise
        self._changed()
        return report

    def _outcome(
        self, accepted: dict[str, tuple[int, Upload]], staged: list[SourceFile], report: IngestReport
    ) -> dict[int, UploadResult]:
        manifest = Manifest.load(self.settings.manifest_path).files
        errors = {e.source: e.reason for e in report.errors}
        out: dict[int, UploadResult] = {}
        for file in staged:
            i, upload = accepted[file.source]
            entry = manifest.get(file.source)
            if entry is None or file.source in errors:
                reason = errors.get(file.source, "it could not be indexed")
                out[i] = UploadResult(
                    upload.name, False, f"{upload.name}: refused, {reason}.", problem="failed"
                )
                continue
            n = len(entry["chunk_ids"])
            out[i] = UploadResult(
                upload.name,
                True,
                f"{upload.name}: indexed with {n} chunk{'s' if n != 1 else ''}.",
                source=file.source,
                chunks=n,
            )
        return out

    # -- removing --------------------------------------------------------------------------------

    def path_of(self, source: str) -> Path | None:
        """The file behind document ``source`` (in the upload or the corpus folder), or None
        when ``source`` does not name a file inside either."""
        if source.startswith(UPLOAD_PREFIX):
            root, name = self.settings.uploads_dir, source.removeprefix(UPLOAD_PREFIX)
        else:
            root, name = self.settings.corpus_dir, source
        if not name or ".." in PurePosixPath(name).parts or name.startswith("/"):
            return None
        path = root / name
        if not path.resolve().is_relative_to(root.resolve()):
            return None
        return path

    def remove(self, source: str) -> int:
        """Delete document ``source``: its file, then its chunks from Chroma and BM25; returns how
        many chunks went. ``DocumentNotFoundError`` when the index has no such document,
        ``IngestBusyError`` when an ingest is running.

        The file goes first: killed after that, the next ingest removes the chunks too.
        """
        with ingest_lock(self.settings.data_dir):
            manifest = Manifest.load(self.settings.manifest_path)
            entry = manifest.files.get(source)
            path = self.path_of(source)
            if entry is None or path is None:
                raise DocumentNotFoundError(f"no indexed document is named {source!r}")
            collection = self._collection()
            check_writer(dict(collection.metadata or {}))
            mark_writing(collection, Writer.here())
            try:
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:  # a read-only corpus folder (an image's own corpus)
                    raise IndexProblem(
                        f"the file of {source} cannot be deleted ({exc}); nothing was removed"
                    ) from exc
                ids = list(entry["chunk_ids"])
                for start in range(0, len(ids), 5000):
                    collection.delete(ids=ids[start : start + 5000])
                del manifest.files[source]
                manifest.save(self.settings.manifest_path)
                sync_lexical(self.settings, collection, manifest)
            except BaseException:
                try:
                    mark_done(collection, None)
                except Exception:  # noqa: BLE001 - keep the error that stopped the removal
                    pass
                raise
            mark_done(collection, fingerprint(manifest.all_ids()))
        self._changed()
        return len(ids)

    def _changed(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception as exc:  # noqa: BLE001 - the change is made; the reload is retried later
            log.warning("could not reload the index after a change: %s", exc)


def _clear_dead_batches(staging: Path) -> None:
    """Remove what uploads of processes that are gone left staged (``upload-<pid>-...``)."""
    for batch in staging.glob("upload-*"):
        pid = batch.name.split("-")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(batch, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def may_change(settings: Settings, user: str | None) -> bool:
    """Whether ``user`` (the signed-in name, None when nobody signed in) may upload and remove
    documents: a name in ``RAG_ADMINS``; with no ``RAG_AUTH``, anyone when ``RAG_ALLOW_UPLOADS``
    is set and the app is bound to loopback (only this machine's users reach it).

    >>> may_change(Settings(_env_file=None, allow_uploads=True), None)
    True
    >>> may_change(Settings(_env_file=None, allow_uploads=True, host="0.0.0.0"), None)
    False
    """
    if settings.auth:
        return user is not None and user in settings.admins
    return settings.allow_uploads and is_loopback(settings.host)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
