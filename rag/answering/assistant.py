"""The assistant: the one way in for front ends (web chat, Slack, CLI, evals).

``open_assistant`` wires everything from one ``Settings`` object: embeddings -> index ->
retriever -> answerer -> chain -> ``Assistant``::

    assistant = open_assistant(settings, ensure_index=True)   # builds a missing index first
    answer = assistant.ask("What policy does the author call an immense failure?")
    answer.to_dict()   # the JSON of `rag ask --json`

Every reason the index cannot be opened or built is an ``IndexProblem`` whose message says what
to do. Tests build the pieces themselves, with fakes (``build_chain``, ``Assistant``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag.answering.chain import TurnState, build_chain, build_retrieval
from rag.answering.chat_model import ChatModelAnswerer, build_openai_model
from rag.answering.condense import Condenser, llm_condense
from rag.answering.extractive import ExtractiveAnswerer
from rag.answering.types import Answer, Answerer, Delta, Turn
from rag.answering.verification import Verifier
from rag.config import Settings
from rag.index.store import IndexProblem

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from langchain_core.embeddings import Embeddings
    from langchain_core.runnables import Runnable

    from rag.index.ingest import IngestReport
    from rag.index.lexical import LexicalIndex
    from rag.retrieval import HybridRetriever

__all__ = [
    "Assistant",
    "IndexProblem",
    "OpenIndex",
    "build_answerer",
    "index_status",
    "open_assistant",
    "open_index",
    "refresh_index",
    "update_index",
]

# How long ``open_assistant(..., ensure_index=True)`` waits for an ingest another process runs.
INGEST_WAIT_S = 900.0


class Assistant:
    """Front ends talk to this: ``ask`` for a whole answer, ``stream`` for deltas then the answer.

    ``k`` ranks deeper than ``top_k`` (the eval asks 10): the answer is still made from the first
    ``top_k`` passages and ``Answer.retrieved`` holds the whole ranking. ``retrieve`` runs the
    chain's own condense and retrieve steps (``retrieval``) without answering. ``status`` says
    what is being asked (documents, chunks, answerer) for front ends to show.
    """

    def __init__(
        self,
        chain: Runnable[dict[str, Any], Delta | Answer],
        *,
        retrieval: Runnable[dict[str, Any], TurnState] | None = None,
        status: dict[str, Any] | None = None,
    ) -> None:
        self.chain = chain
        self.retrieval = retrieval
        self.status = status or {}

    def stream(
        self, question: str, history: Sequence[Turn] | None = None, *, k: int | None = None
    ) -> Iterator[Delta | Answer]:
        yield from self.chain.stream({"question": question, "history": list(history or []), "k": k})

    def ask(self, question: str, history: Sequence[Turn] | None = None, *, k: int | None = None) -> Answer:
        for event in self.stream(question, history, k=k):
            if isinstance(event, Answer):
                return event
        raise RuntimeError("the chain produced no answer")  # pragma: no cover - chain invariant

    def retrieve(
        self, question: str, history: Sequence[Turn] | None = None, *, k: int | None = None
    ) -> TurnState:
        """The turn as the chain would answer it (standalone question, ranking), unanswered."""
        if self.retrieval is None:
            raise RuntimeError("this assistant was built without its retrieval steps")
        return self.retrieval.invoke({"question": question, "history": list(history or []), "k": k})


@dataclass
class OpenIndex:
    """The built index, opened for querying."""

    collection: Collection
    lexical: LexicalIndex
    titles: LexicalIndex
    documents: int
    chunks: int

    def retriever(self, embeddings: Embeddings, settings: Settings) -> HybridRetriever:
        from rag.retrieval import HybridRetriever

        return HybridRetriever(
            collection=self.collection,
            embeddings=embeddings,
            lexical=self.lexical,
            titles=self.titles,
            settings=settings,
        )


def open_index(settings: Settings, embeddings: Embeddings) -> OpenIndex:
    """Open the built index for querying; raises ``IndexMissingError`` when there is none."""
    from rag.index.embeddings import spec_of
    from rag.index.ingest import sync_lexical
    from rag.index.manifest import Manifest
    from rag.index.store import IndexMissingError, make_client, open_collection

    manifest = Manifest.load(settings.manifest_path)
    if not manifest.files:
        raise IndexMissingError(
            f"no index in {settings.data_dir}: run `rag ingest` to build it from {settings.corpus_dir}"
        )
    spec = spec_of(settings, embeddings)
    collection = open_collection(
        make_client(settings), settings.collection, spec.name, spec.dim, create=False
    )
    lexical, titles = sync_lexical(settings, collection, manifest)
    return OpenIndex(collection, lexical, titles, len(manifest.files), collection.count())


def index_status(settings: Settings) -> str | None:
    """Why the index needs an ingest ("missing", "stale: ..."), or None when it is current.

    Cheap: hashes the corpus files and reads the manifest, loads no model.
    """
    from rag.index.ingest import index_status as status

    return status(settings)


def update_index(
    settings: Settings,
    *,
    embeddings_factory: Callable[[], Embeddings] | None = None,
    rebuild: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Bring the index in line with ``settings.corpus_dir`` (``rag ingest``): new and changed
    files embedded, deleted ones removed; everything anew with ``rebuild``.

    ``embeddings_factory`` (default: the model the settings name) is only called when something
    needs embedding; ``progress(done, total)`` is called as chunks are embedded. Raises
    ``IndexProblem`` (no documents, another ingest running, an unusable store).
    """
    from rag.index.embeddings import build_embeddings
    from rag.index.ingest import ingest

    factory = embeddings_factory or (lambda: build_embeddings(settings))
    return ingest(settings, factory, rebuild=rebuild, progress=progress)


def refresh_index(
    settings: Settings,
    *,
    embeddings_factory: Callable[[], Embeddings] | None = None,
    progress: Callable[[str], None] | None = None,
    wait_s: float = INGEST_WAIT_S,
) -> None:
    """Ingest when the index is missing or stale, so a fresh clone can answer (and run the eval)
    directly; ``progress`` is told what is done, a line at a time.

    When another process is ingesting the same data directory, wait for it (at most ``wait_s``)
    and check again. Raises ``IndexProblem`` when the index cannot be built.
    """
    from rag.index.ingest import IngestBusyError

    say = progress or (lambda line: None)
    deadline = time.monotonic() + wait_s
    waiting = False
    while (reason := index_status(settings)) is not None:
        try:
            say(f"index {reason}: ingesting {settings.corpus_dir} into {settings.data_dir}")
            say(update_index(settings, embeddings_factory=embeddings_factory).summary())
            return
        except IngestBusyError:
            if time.monotonic() > deadline:
                raise
            if not waiting:
                say("another ingest is running on this data directory: waiting for it")
                waiting = True
            time.sleep(5)


def build_answerer(settings: Settings, embeddings: Embeddings) -> Answerer:
    """The answerer the settings name, with its collaborators."""
    if settings.answerer == "openai":
        return ChatModelAnswerer(
            build_openai_model(settings), name="openai", max_history_turns=settings.max_history_turns
        )
    extractive = ExtractiveAnswerer(
        embeddings,
        max_sentences=settings.extractive_max_sentences,
        min_score=settings.extractive_min_score,
    )
    if settings.answerer == "llamacpp" and settings.llm_role == "judge":
        from rag.answering.judged import build_judged_answerer

        return build_judged_answerer(settings, extractive)
    if settings.answerer == "llamacpp":
        from rag.answering.llamacpp import build_llamacpp_answerer

        return build_llamacpp_answerer(settings)
    return extractive


def open_assistant(
    settings: Settings,
    *,
    embeddings: Embeddings | None = None,
    ensure_index: bool = False,
    progress: Callable[[str], None] | None = None,
    wait_s: float = INGEST_WAIT_S,
) -> Assistant:
    """The assistant over the index of ``settings``: embeddings -> index -> retriever ->
    answerer -> chain.

    With ``ensure_index`` a missing or stale index is first built or updated from
    ``settings.corpus_dir`` (an ingest another process is running is waited for, up to
    ``wait_s``); ``progress`` is told what is done, a line at a time. ``embeddings`` defaults to
    the model the settings name. Raises ``IndexProblem`` when there is no usable index: its
    message says what to do.
    """
    from rag.index.embeddings import build_embeddings

    built: list[Embeddings] = [embeddings] if embeddings is not None else []

    def model() -> Embeddings:
        if not built:
            built.append(build_embeddings(settings))
        return built[0]

    if ensure_index:
        refresh_index(settings, embeddings_factory=model, progress=progress, wait_s=wait_s)
    index = open_index(settings, model())
    retriever = index.retriever(model(), settings)
    answerer = build_answerer(settings, model())
    extractive = ExtractiveAnswerer(
        model(),
        max_sentences=settings.extractive_max_sentences,
        min_score=settings.extractive_min_score,
    )
    condense: Condenser | None = None
    verifier: Verifier | None = None
    if settings.answerer == "openai":
        condense = llm_condense(build_openai_model(settings))
    elif settings.answerer == "llamacpp" and settings.llm_role == "writer":
        # A judged answer is made of quotes: the heuristic condenses and exact matching checks
        # it, and the model's time goes to the one judgement.
        from rag.answering.llamacpp import llamacpp_condense, llamacpp_verifier

        condense = llamacpp_condense(settings)
        verifier = llamacpp_verifier(settings)
    chain = build_chain(
        retriever=retriever,
        answerer=answerer,
        settings=settings,
        condense=condense,
        verifier=verifier,
        fallback=extractive if settings.fallback_to_extractive and answerer.name != "extractive" else None,
    )
    retrieval = build_retrieval(retriever=retriever, settings=settings, condense=condense)
    status = {"documents": index.documents, "chunks": index.chunks, "answerer": answerer.name}
    return Assistant(chain, retrieval=retrieval, status=status)
