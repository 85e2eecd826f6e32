"""The documents service front ends use (the documents view, ``/api/documents``): the index
layer's ``DocumentLibrary``, wired to the assistant so that a document added or removed is
answered from as soon as it is indexed::

    library = open_library(settings, embeddings=embeddings, assistant=assistant)
    library.documents()                      # [DocumentInfo(source=..., title=..., chunks=...), ...]
    library.add([Upload("notes.md", data)])  # [UploadResult(ok=True, message="notes.md: indexed ...")]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.config import Settings
from rag.index.library import DocumentLibrary

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from rag.answering.assistant import Assistant


def open_library(
    settings: Settings, *, embeddings: Embeddings | None = None, assistant: Assistant | None = None
) -> DocumentLibrary:
    """The documents of the index of ``settings``. ``embeddings`` (default: the model the settings
    name, loaded at the first upload) embed uploads; hand in the assistant's own to load the
    model once. After a change the ``assistant`` reloads its index at once (its ``refresh``)."""
    from rag.index.embeddings import build_embeddings

    built: list[Embeddings] = [embeddings] if embeddings is not None else []

    def model() -> Embeddings:
        if not built:
            built.append(build_embeddings(settings))
        return built[0]

    return DocumentLibrary(settings, embeddings_factory=model, on_change=getattr(assistant, "refresh", None))
