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

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag.answering.chain import TurnState, build_chain, build_retrieval
from rag.answering.chat_model import ChatModelAnswerer, build_openai_model
from rag.answering.condense import Condenser, llm_condense
from rag.answering.extractive import ExtractiveAnswerer
from rag.answering.facts import strict
from rag.answering.types import Answer, Answerer, Delta, QuestionError, Turn
from rag.answering.verification import Verifier, verify_by_match
from rag.config import Settings
from rag.index.store import IndexProblem
from rag.observability import QUESTION_LOG, Metrics, log_event, new_request_id, process_metrics

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
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

log = logging.getLogger(__name__)
question_log = logging.getLogger(QUESTION_LOG)

# How long ``open_assistant(..., ensure_index=True)`` waits for an ingest another process runs.
INGEST_WAIT_S = 900.0


class Assistant:
    """Front ends talk to this: ``ask`` for a whole answer, ``stream`` for deltas then the answer.

    ``k`` ranks deeper than ``top_k`` (the eval asks 10): the answer is still made from the first
    ``top_k`` passages and ``Answer.retrieved`` holds the whole ranking. ``retrieve`` runs the
    chain's own condense and retrieve steps (``retrieval``) without answering. ``status`` says
    what is being asked (documents, chunks, answerer) for front ends to show.

    Every question asked through ``stream`` or ``ask`` is counted in ``metrics`` (by front end,
    ``frontend`` unless the call names another, and outcome) and logged as one line with its
    request id, timings, outcome, answerer and cited sources (its text only with
    ``log_questions``), so all front ends are counted alike. ``refresh`` (at most every
    ``refresh_every_s`` seconds, before a question) picks up an index another process wrote
    (``OpenIndex.reload_if_newer``).
    """

    def __init__(
        self,
        chain: Runnable[dict[str, Any], Delta | Answer],
        *,
        retrieval: Runnable[dict[str, Any], TurnState] | None = None,
        status: dict[str, Any] | None = None,
        metrics: Metrics | None = None,
        log_questions: bool = False,
        refresh: Callable[[], object] | None = None,
        refresh_every_s: float = 10.0,
        frontend: str = "api",
        retriever: BaseRetriever | None = None,
    ) -> None:
        self.chain = chain
        # The hybrid retriever the chain ranks with, a LangChain retriever for users' own chains.
        self.retriever = retriever
        self.frontend = frontend
        self.retrieval = retrieval
        self.status = status or {}
        self.metrics = metrics or process_metrics()
        self.log_questions = log_questions
        self.refresh = refresh
        self.refresh_every_s = refresh_every_s
        self._checked = -float("inf")
        self._refresh_lock = threading.Lock()

    def stream(
        self,
        question: str,
        history: Sequence[Turn] | None = None,
        *,
        k: int | None = None,
        frontend: str | None = None,
        request_id: str | None = None,
    ) -> Iterator[Delta | Answer]:
        """Deltas, then the ``Answer``; ``frontend`` ("web", "slack", "api", ...; default the
        assistant's) labels its metrics and ``request_id`` (default: a new one) its log line."""
        frontend = frontend or self.frontend
        request_id = request_id or new_request_id()
        started = time.perf_counter()
        self._maybe_refresh()
        try:
            for event in self.chain.stream({"question": question, "history": list(history or []), "k": k}):
                if isinstance(event, Answer):
                    # Recorded before it is handed on: ``ask`` stops reading at the answer.
                    self._observe(frontend, request_id, question, answer=event)
                yield event
        except QuestionError:
            self._observe(frontend, request_id, question, outcome="invalid", started=started)
            raise
        except Exception as exc:
            self._observe(frontend, request_id, question, outcome="error", started=started, error=exc)
            raise

    def ask(
        self,
        question: str,
        history: Sequence[Turn] | None = None,
        *,
        k: int | None = None,
        frontend: str | None = None,
        request_id: str | None = None,
    ) -> Answer:
        for event in self.stream(question, history, k=k, frontend=frontend, request_id=request_id):
            if isinstance(event, Answer):
                return event
        raise RuntimeError("the chain produced no answer")  # pragma: no cover - chain invariant

    def retrieve(
        self, question: str, history: Sequence[Turn] | None = None, *, k: int | None = None
    ) -> TurnState:
        """The turn as the chain would answer it (standalone question, ranking), unanswered."""
        if self.retrieval is None:
            raise RuntimeError("this assistant was built without its retrieval steps")
        self._maybe_refresh()
        return self.retrieval.invoke({"question": question, "history": list(history or []), "k": k})

    # -- operations ------------------------------------------------------------------------

    def _maybe_refresh(self) -> None:
        if self.refresh is None:
            return
        now = time.monotonic()
        # One question at a time checks; the others answer from the index they have.
        if now - self._checked < self.refresh_every_s or not self._refresh_lock.acquire(blocking=False):
            return
        try:
            self._checked = now
            self.refresh()
        except Exception as exc:  # noqa: BLE001 - a failed check must not cost the answer
            log.warning("could not check the store for a newer index: %s", exc)
        finally:
            self._refresh_lock.release()

    def _observe(
        self,
        frontend: str,
        request_id: str,
        question: str,
        *,
        answer: Answer | None = None,
        outcome: str | None = None,
        started: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        timings: dict[str, float] = {}
        best: float | None = None
        sources: list[str] = []
        answerer = self.status.get("answerer")
        if answer is not None:
            timings = dict(answer.timings_ms)
            best = max((p.similarity for p in answer.retrieved), default=None)
            sources = list(dict.fromkeys(c.passage.source for c in answer.citations))
            if answer.refused:
                outcome = "refused"
            elif answerer and answer.mode != answerer:
                outcome = "fallback"  # the configured answerer failed; another one answered
            else:
                outcome = "answered"
            answerer = answer.mode
        elif started is not None:
            timings = {"total": (time.perf_counter() - started) * 1000}
        outcome = outcome or "error"
        try:
            self.metrics.question(frontend, outcome, timings_ms=timings, best_score=best)
        except Exception as exc:  # noqa: BLE001 - counting must never cost the answer
            log.warning("could not record the question's metrics: %s", exc)
        event: dict[str, Any] = {
            "event": "question",
            "request_id": request_id,
            "frontend": frontend,
            "outcome": outcome,
            "answerer": answerer,
            "timings_ms": {k: round(v, 1) for k, v in timings.items()},
            "best_score": None if best is None else round(best, 4),
            "sources": sources,
        }
        if error is not None:
            event["error"] = type(error).__name__
        if self.log_questions and question:
            event["question"] = question
        total = timings.get("total")
        log_event(
            question_log,
            f"question {request_id} from {frontend}: {outcome}"
            + (f" in {total:.0f} ms" if total is not None else "")
            + (f" by {answerer}" if answer is not None else ""),
            event,
        )


@dataclass
class OpenIndex:
    """The built index, opened for querying."""

    collection: Collection
    lexical: LexicalIndex
    titles: LexicalIndex
    documents: int
    chunks: int
    client: ClientAPI | None = None
    settings: Settings | None = None

    def retriever(self, embeddings: Embeddings, settings: Settings) -> HybridRetriever:
        from rag.retrieval import HybridRetriever

        return HybridRetriever(
            collection=self.collection,
            embeddings=embeddings,
            lexical=self.lexical,
            titles=self.titles,
            settings=settings,
        )

    def reload_if_newer(self, retriever: HybridRetriever) -> bool:
        """When the store holds a complete index other than the one loaded (an ingest ran
        elsewhere), rebuild the BM25 copy from the store and hand it to ``retriever``; True when
        it did. An ingest still writing is waited out (the next check looks again)."""
        from rag.index.ingest import sync_lexical
        from rag.index.state import read_state

        if self.client is None or self.settings is None:
            return False
        current = self.client.get_collection(self.settings.collection)
        state = read_state(current.metadata)
        if state.writer is not None or not state.fingerprint or state.fingerprint == self.lexical.fingerprint:
            return False
        lexical, titles = sync_lexical(
            self.settings, current, None, wanted=state.fingerprint, save=self.settings.ingest_on_start
        )
        # A rebuild drops and recreates the collection: the old handle would point at nothing.
        self.collection = retriever.collection = current
        self.lexical, self.titles = retriever.lexical, retriever.titles = lexical, titles
        self.chunks, self.documents = len(lexical.ids), len(titles.ids)
        log.info("loaded the newer index the store holds (%s chunks, written %s)", self.chunks, state.updated)
        return True


def open_index(settings: Settings, embeddings: Embeddings) -> OpenIndex:
    """Open the built index for querying; raises ``IndexMissingError`` when there is none.

    The store's own record of its index (``rag.index.state``) decides which chunks BM25 must hold;
    the local manifest only when the store has none (an index built before that record), so a
    replica needs no copy of the writer's data directory.
    """
    from rag.index.embeddings import spec_of
    from rag.index.ingest import sync_lexical
    from rag.index.manifest import Manifest
    from rag.index.state import read_state
    from rag.index.store import IndexMissingError, make_client, open_collection

    manifest = Manifest.load(settings.manifest_path)
    client = make_client(settings) if (manifest.files or settings.chroma_host) else None
    if client is None:
        raise IndexMissingError(
            f"no index in {settings.data_dir}: run `rag ingest` to build it from {settings.corpus_dir}"
        )
    spec = spec_of(settings, embeddings)
    collection = open_collection(client, settings.collection, spec.name, spec.dim, create=False)
    state = read_state(collection.metadata)
    if not manifest.files and not state.fingerprint:
        raise IndexMissingError(
            f"no index in {settings.data_dir}: run `rag ingest` to build it from {settings.corpus_dir}"
        )
    lexical, titles = sync_lexical(
        settings, collection, manifest, wanted=state.fingerprint, save=settings.ingest_on_start
    )
    documents = len(manifest.files) if not state.fingerprint else len(titles.ids)
    return OpenIndex(collection, lexical, titles, documents, collection.count(), client, settings)


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
    force: bool = False,
) -> IngestReport:
    """Bring the index in line with ``settings.corpus_dir`` (``rag ingest``): new and changed
    files embedded, deleted ones removed; everything anew with ``rebuild``.

    ``embeddings_factory`` (default: the model the settings name) is only called when something
    needs embedding; ``progress(done, total)`` is called as chunks are embedded. Raises
    ``IndexProblem`` (no documents, another ingest running, an unusable store); ``force`` takes
    over from an ingest whose unfinished marker is in the store (one that died elsewhere).
    """
    from rag.index.embeddings import build_embeddings
    from rag.index.ingest import ingest

    factory = embeddings_factory or (lambda: build_embeddings(settings))
    return ingest(settings, factory, rebuild=rebuild, progress=progress, force=force)


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


def build_extractive(settings: Settings, embeddings: Embeddings) -> ExtractiveAnswerer:
    """The extractive answerer, with the sentence ranker, and the reader ``rag tune`` trained
    when there is one."""
    from rag.answering.ranking import SentenceRanker
    from rag.answering.reader import tuned_reader

    return ExtractiveAnswerer(
        embeddings,
        max_sentences=settings.extractive_max_sentences,
        min_score=settings.extractive_min_score,
        other_document_within=settings.extractive_other_document_within,
        answer_types=settings.answer_types,
        reader=tuned_reader(settings),
        reader_weight=settings.reader_weight,
        reader_min=settings.reader_min,
        ranker=SentenceRanker.load() if settings.sentence_ranker == "on" else None,
    )


def build_answerer(settings: Settings, embeddings: Embeddings) -> Answerer:
    """The answerer the settings name, with its collaborators."""
    if settings.answerer == "openai":
        return ChatModelAnswerer(
            build_openai_model(settings), name="openai", max_history_turns=settings.max_history_turns
        )
    extractive = build_extractive(settings, embeddings)
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
    metrics: Metrics | None = None,
    frontend: str = "api",
) -> Assistant:
    """The assistant over the index of ``settings``: embeddings -> index -> retriever ->
    answerer -> chain. It counts its questions in ``metrics`` (default: the process's) under
    ``frontend`` and reloads the store's index when another process has written a newer one.

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
    extractive = build_extractive(settings, model())
    condense: Condenser | None = None
    verifier: Verifier | None = None
    # A written sentence must keep every number, date and name of the passages it cites: word
    # overlap and the small model's yes/no both let "$60 billion" for "$15 million" through.
    if settings.answerer == "openai":
        condense = llm_condense(build_openai_model(settings))
        verifier = strict(verify_by_match)
    elif settings.answerer == "llamacpp" and settings.llm_role == "writer":
        # A judged answer is made of quotes: the heuristic condenses and exact matching checks
        # it, and the model's time goes to the one judgement.
        from rag.answering.llamacpp import llamacpp_condense, llamacpp_verifier

        condense = llamacpp_condense(settings)
        verifier = strict(llamacpp_verifier(settings))
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
    metrics = metrics or process_metrics()
    metrics.index_size(index.chunks, index.documents)

    def refresh() -> None:
        if index.reload_if_newer(retriever):
            status.update(documents=index.documents, chunks=index.chunks)
            metrics.index_reloads.inc()
            metrics.index_size(index.chunks, index.documents)

    return Assistant(
        chain,
        retrieval=retrieval,
        status=status,
        metrics=metrics,
        log_questions=settings.log_questions,
        refresh=refresh,
        refresh_every_s=settings.index_check_s,
        frontend=frontend,
        retriever=retriever,
    )
