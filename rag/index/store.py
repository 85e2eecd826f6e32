"""The Chroma vector store: client construction and the collection that holds the chunks.

Embedded ``PersistentClient`` under the data directory by default; ``HttpClient`` when a Chroma
server host is configured. The collection records the embedding model and its dimension, and
opening it with another model is an error that says how to fix it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rag.config import Settings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection


class IndexProblem(Exception):  # noqa: N818 - the base of the *Error classes of the index
    """Base class for index problems shown to users as plain messages: the index is missing,
    built with another model or unreachable, the corpus unusable, another ingest running."""


class IndexMissingError(IndexProblem):
    pass


class IndexMismatchError(IndexProblem):
    pass


class StoreUnavailableError(IndexProblem):
    pass


def make_client(settings: Settings) -> ClientAPI:
    """Build the Chroma client the settings ask for (telemetry always off)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_host:
        try:
            client = chromadb.HttpClient(
                host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings
            )
            client.heartbeat()
        except Exception as exc:
            raise StoreUnavailableError(
                f"cannot reach the Chroma server at {settings.chroma_host}:{settings.chroma_port}"
                f" ({type(exc).__name__}); is `chroma run` up?"
            ) from exc
        return client
    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    try:
        return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)
    except Exception as exc:  # a damaged chroma.sqlite3 ("file is not a database"), a bad folder
        raise StoreUnavailableError(
            f"the index in {settings.chroma_dir} cannot be opened ({exc}); move that folder away"
            " and run `rag ingest --rebuild`"
        ) from exc


# HNSW is approximate and its graph depends on the order its threads inserted the vectors, so
# with a narrow search (Chroma's default ef 100) a fresh index and an updated one could return
# different neighbours for the same question. A search this wide is exact in practice on
# collections of this size (every fetch_k <= 200), which makes rankings reproducible.
HNSW_SEARCH_EF = 256
HNSW_CONFIGURATION: dict[str, Any] = {"space": "cosine", "ef_construction": 200, "ef_search": HNSW_SEARCH_EF}


def collection_metadata(model_name: str, dim: int) -> dict[str, Any]:
    # The distance lives in the configuration: Chroma ignores "hnsw:space" in the metadata once
    # a configuration is given (and falls back to l2).
    return {"embedding_model": model_name, "embedding_dim": dim}


def create_collection(client: ClientAPI, name: str, model_name: str, dim: int) -> Collection:
    return client.create_collection(
        name,
        metadata=collection_metadata(model_name, dim),
        configuration={"hnsw": HNSW_CONFIGURATION},  # type: ignore[arg-type]
    )


def open_collection(client: ClientAPI, name: str, model_name: str, dim: int, *, create: bool) -> Collection:
    """Open (or create) the chunk collection, checking it was built with the same model."""
    try:
        existing = {c.name if hasattr(c, "name") else str(c) for c in client.list_collections()}
    except Exception as exc:
        raise StoreUnavailableError(f"the Chroma store cannot be read ({exc})") from exc
    if name not in existing:
        if not create:
            raise IndexMissingError("the index has not been built yet: run `rag ingest` first")
        return create_collection(client, name, model_name, dim)
    collection = client.get_collection(name)
    _widen_search(collection)
    meta = collection.metadata or {}
    built_with = meta.get("embedding_model")
    built_dim = meta.get("embedding_dim")
    if built_with != model_name or built_dim != dim:
        raise IndexMismatchError(
            f"the index was built with embedding model {built_with!r} ({built_dim} dims) but the"
            f" settings ask for {model_name!r} ({dim} dims): run `rag ingest --rebuild`"
        )
    return collection


def drop_collection(client: ClientAPI, name: str) -> None:
    existing = {c.name if hasattr(c, "name") else str(c) for c in client.list_collections()}
    if name in existing:
        client.delete_collection(name)


def _widen_search(collection: Collection) -> None:
    """Give an index built before ``HNSW_SEARCH_EF`` the same exact-in-practice search."""
    try:
        hnsw = (collection.configuration or {}).get("hnsw") or {}
        if int(hnsw.get("ef_search") or 0) < HNSW_SEARCH_EF:
            collection.modify(configuration={"hnsw": {"ef_search": HNSW_SEARCH_EF}})
    except Exception as exc:  # noqa: BLE001 - a read-only store still answers, less reproducibly
        log.warning("could not widen the index's search (%s)", exc)
