"""What the store itself says about its index: which chunks the last complete ingest left there,
and whether an ingest is writing to it now.

Both live in the Chroma collection's metadata, so every process that reads the store sees them,
whatever machine and data directory it runs from (``docs/scaling.md``):

- ``index_fingerprint`` / ``index_updated``: the fingerprint of the chunk ids a finished ingest
  left (``rag.index.lexical.fingerprint``) and when. An app replica whose BM25 copy has another
  fingerprint rebuilds it from the store (``OpenIndex.reload_if_newer``) without a restart.
- ``ingest_host`` / ``ingest_pid`` / ``ingest_started``: the marker of an ingest under way, set
  before its first write and removed after its last. Another ingest that finds it stops with a
  message naming the host and start time, instead of writing beside it (the file lock only
  covers one data directory; a Chroma server can be shared by several).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rag.index.store import IndexProblem

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)

FINGERPRINT = "index_fingerprint"
UPDATED = "index_updated"
MARKER = ("ingest_host", "ingest_pid", "ingest_started")


class IngestUnfinishedError(IndexProblem):
    """Another ingest's marker is in the store: it is running, or it died without finishing."""


@dataclass(frozen=True)
class Writer:
    """The ingest the marker names."""

    host: str
    pid: int
    started: str

    @classmethod
    def here(cls) -> Writer:
        return cls(socket.gethostname(), os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"))

    def is_stale(self) -> bool:
        """True when the marker was left by a process of this machine that is gone: it cannot
        be writing. A marker from another machine can only be judged by a person."""
        if self.host != socket.gethostname():
            return False
        if self.pid == os.getpid():  # a container restarted with the same pid as before
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


@dataclass(frozen=True)
class StoreState:
    fingerprint: str | None
    updated: str | None
    writer: Writer | None


def read_state(metadata: dict[str, Any] | None) -> StoreState:
    """The state recorded in a collection's metadata (an index built before these keys: all None).

    >>> read_state({"index_fingerprint": "ab12", "index_updated": "2026-11-28"}).writer is None
    True
    >>> read_state({"ingest_host": "box", "ingest_pid": 7, "ingest_started": "2026-11-28"}).writer
    Writer(host='box', pid=7, started='2026-11-28')
    """
    meta = metadata or {}
    writer = None
    if meta.get(MARKER[0]):
        writer = Writer(str(meta[MARKER[0]]), int(meta.get(MARKER[1]) or 0), str(meta.get(MARKER[2]) or "?"))
    fp = meta.get(FINGERPRINT)
    updated = meta.get(UPDATED)
    return StoreState(str(fp) if fp else None, str(updated) if updated else None, writer)


def check_writer(metadata: dict[str, Any] | None, *, force: bool = False) -> None:
    """Raise ``IngestUnfinishedError`` when another ingest's marker is in the store, unless it is
    stale (its process, on this machine, is gone) or ``force`` is set."""
    writer = read_state(metadata).writer
    if writer is None:
        return
    if force or writer.is_stale():
        log.warning(
            "taking over from an unfinished ingest (host %s, pid %s, started %s)",
            writer.host,
            writer.pid,
            writer.started,
        )
        return
    raise IngestUnfinishedError(
        f"another ingest (host {writer.host}, pid {writer.pid}, started {writer.started}) has not"
        " finished writing to this store; nothing was written. Wait for it, or, if that run is dead,"
        " run `rag ingest --force` to take over (its work is completed, not duplicated)"
    )


def _without_state(metadata: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (metadata or {}).items() if k not in (*MARKER, FINGERPRINT, UPDATED)}


def mark_writing(collection: Collection, writer: Writer) -> None:
    """Put ``writer``'s marker in the store (the other metadata kept: ``modify`` replaces it all)."""
    meta = dict(collection.metadata or {})
    meta.update(dict(zip(MARKER, (writer.host, writer.pid, writer.started), strict=True)))
    collection.modify(metadata=meta)


def mark_done(collection: Collection, fingerprint: str | None) -> None:
    """Remove the marker; with ``fingerprint``, record it as the store's complete index."""
    meta = dict(collection.metadata or {})
    state = read_state(meta)
    meta = _without_state(meta)
    if fingerprint:
        meta[FINGERPRINT] = fingerprint
        meta[UPDATED] = datetime.now(UTC).isoformat(timespec="seconds")
    elif state.fingerprint:  # a failed run: the last complete index is still the one named
        meta[FINGERPRINT] = state.fingerprint
        meta[UPDATED] = state.updated or ""
    collection.modify(metadata=meta)
