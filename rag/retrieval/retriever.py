"""Retrieval: dense search in Chroma fused with BM25 by reciprocal rank, optional MMR.

Every returned passage carries its cosine similarity to the question (also for passages only
BM25 found), so the refusal threshold means the same thing whichever list found the passage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.config import Settings
from rag.index.lexical import LexicalIndex
from rag.index.store import StoreUnavailableError
from rag.retrieval.spelling import SpellingCorrector
from rag.text import STOPWORDS, content_tokens

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from langchain_core.embeddings import Embeddings


@dataclass
class Passage:
    """A retrieved chunk: its text, where it comes from, and how well it matched."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    similarity: float
    fused: float = 0.0
    vector: Any = field(default=None, repr=False)
    # From a document the question points at ("the article", a title it names): the question is
    # about this document, so a low cosine alone does not make it off-topic.
    named: bool = False

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", self.source))

    @property
    def section(self) -> str:
        return str(self.metadata.get("section", ""))

    @property
    def url(self) -> str | None:
        url = self.metadata.get("source_url")
        return str(url) if url and str(url).startswith(("http://", "https://")) else None


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(id) = sum over lists of weight / (k + rank), rank from 1.

    >>> reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=1)
    [('b', 0.8333333333333333), ('a', 0.5), ('c', 0.3333333333333333)]
    """
    scores: dict[str, float] = {}
    for i, ranking in enumerate(rankings):
        weight = weights[i] if weights is not None else 1.0
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def fuse_passages(
    rankings: Sequence[Sequence[Passage]], k: int = 60, weights: Sequence[float] | None = None
) -> list[Passage]:
    """``reciprocal_rank_fusion`` over passage lists; each passage gets its ``fused`` score."""
    by_id = {p.chunk_id: p for ranking in rankings for p in ranking}
    fused = reciprocal_rank_fusion([[p.chunk_id for p in ranking] for ranking in rankings], k, weights)
    for chunk_id, score in fused:
        by_id[chunk_id].fused = score
    return [by_id[chunk_id] for chunk_id, _ in fused]


# A question that points at a written piece ("according to the article", "the author says",
# "the Diplomat op-ed") asks about a document with a byline, not about every text on its topic.
AUTHORED_REFERENCE = re.compile(
    r"\b(?:the|this|that)\s+(?:(?P<qualifier>[\w-]+)\s+)?"
    r"(?:article|piece|op-?ed|essay|column|commentary|author|writer|columnist)\b",
    re.IGNORECASE,
)


def authored_reference(query: str, bylines: dict[str, str]) -> list[str]:
    """The files among ``bylines`` (file -> author, publication and title) that the question
    points at with "the article", "the author", "the Diplomat piece"; a qualifier must occur in
    the byline ("the Wikipedia article" does not point at an op-ed).

    >>> bylines = {"op-ed.md": "jane doe, the gazette, why talk"}
    >>> authored_reference("What does the author want?", bylines)
    ['op-ed.md']
    >>> authored_reference("What does the Gazette article say?", bylines)
    ['op-ed.md']
    >>> authored_reference("What does the Wikipedia article say?", bylines)
    []
    """
    found: list[str] = []
    for match in AUTHORED_REFERENCE.finditer(query):
        qualifier = (match.group("qualifier") or "").casefold()
        plain = not qualifier or qualifier in ("same", "whole", "original", "first", "opinion")
        for source, byline in bylines.items():
            if source not in found and (plain or re.search(rf"\b{re.escape(qualifier)}\b", byline)):
                found.append(source)
    return found


_TITLE_WORD = re.compile(r"[0-9a-z]+")


def title_phrases(titles: dict[str, str], n: int = 3) -> dict[tuple[str, ...], str]:
    """Runs of ``n`` consecutive title words that name one document: they begin and end with a
    content word and occur in no other title (file -> title in, phrase -> file out). "missile
    technology control" names one document; "cia world factbook" names a family of them, which
    says nothing about which.

    >>> title_phrases({"a.md": "Nuclear Suppliers Group", "b.md": "Nuclear Suppliers Group members"})
    {('suppliers', 'group', 'members'): 'b.md'}
    """
    owners: dict[tuple[str, ...], set[str]] = {}
    for source, title in titles.items():
        words = _TITLE_WORD.findall(title.casefold())
        for i in range(len(words) - n + 1):
            run = tuple(words[i : i + n])
            if run[0] not in STOPWORDS and run[-1] not in STOPWORDS:
                owners.setdefault(run, set()).add(source)
    return {run: next(iter(files)) for run, files in owners.items() if len(files) == 1}


def spelled_out(query: str, phrases: dict[tuple[str, ...], str], n: int = 3) -> list[str]:
    """The files whose title the question spells out (holds one of its ``title_phrases``).

    >>> phrases = title_phrases({"nsg.md": "Nuclear Suppliers Group", "e.md": "Economy of North Korea"})
    >>> spelled_out("Who founded the nuclear suppliers group?", phrases)
    ['nsg.md']
    >>> spelled_out("Who supplies nuclear fuel to the capital of North Korea?", phrases)
    []
    """
    words = _TITLE_WORD.findall(query.casefold())
    found = (phrases.get(tuple(words[i : i + n])) for i in range(len(words) - n + 1))
    return list(dict.fromkeys(f for f in found if f is not None))


# Where a question goes on to ask a second thing: ", and when did it join the NSG?",
# "but how many does it have now?". Not after a full stop: "What is X? And Y?" is a follow-up
# joined to its question by the condenser, whose later part needs the earlier one.
QUESTION_PARTS = re.compile(
    r"(?<![.?!]),?\s+\b(?:and|but|while|whereas)\s+(?=(?:who|whom|whose|what|when|where|which|why|how"
    r"|is|are|was|were|does|did|do|can|could|has|have|had|will|would|should)\b)",
    re.IGNORECASE,
)


def question_parts(query: str) -> list[str]:
    """Sub-queries for a question that asks several things, one per part; later parts are
    followed by the first part's content words, since they often say "it" for its subject.
    Empty when the question asks one thing.

    >>> question_parts("When did South Korea join the MTCR, and when did it join the NSG?")
    ['When did South Korea join the MTCR', 'when did it join the NSG? south korea join mtcr']
    >>> question_parts("What share of GDP did Japan and South Korea spend on the military?")
    []
    >>> question_parts("What is the capital of Japan? And how many people live in the capital?")
    []
    """
    parts = [part.strip(" ,;") for part in QUESTION_PARTS.split(query)]
    parts = [part for part in parts if len(content_tokens(part)) >= 2]
    if len(parts) < 2:
        return []
    context = " ".join(content_tokens(parts[0]))
    return [parts[0]] + [f"{part} {context}" for part in parts[1:]]


def reserve(ordered: list[Passage], picks: Sequence[Passage], k: int) -> list[Passage]:
    """``ordered`` with each of ``picks`` moved into the first ``k`` (displacing the lowest
    ranked passages that are not picks), the first ``k`` kept in rank order.

    >>> ps = [Passage(c, "", {}, 0.0) for c in "abcd"]
    >>> [p.chunk_id for p in reserve(ps, [ps[3]], 2)]
    ['a', 'd', 'b', 'c']
    """
    rank = {p.chunk_id: i for i, p in enumerate(ordered)}
    wanted = list({p.chunk_id: p for p in picks if p.chunk_id in rank}.values())[:k]
    wanted_ids = {p.chunk_id for p in wanted}
    top = [p for p in ordered if p.chunk_id not in wanted_ids][: k - len(wanted)] + wanted
    top.sort(key=lambda p: rank[p.chunk_id])
    top_ids = {p.chunk_id for p in top}
    return top + [p for p in ordered if p.chunk_id not in top_ids]


def mmr_order(query: np.ndarray, vectors: np.ndarray, relevance: np.ndarray, k: int, lam: float) -> list[int]:
    """Maximal marginal relevance: pick ``k`` indices trading relevance against redundancy."""
    chosen: list[int] = []
    candidates = list(range(len(vectors)))
    while candidates and len(chosen) < k:
        if chosen:
            redundancy = (vectors[candidates] @ vectors[chosen].T).max(axis=1)
        else:
            redundancy = np.zeros(len(candidates))
        scores = lam * relevance[candidates] - (1 - lam) * redundancy
        best = candidates[int(np.argmax(scores))]
        chosen.append(best)
        candidates.remove(best)
    return chosen


def diversify(passages: list[Passage], k: int, per_source: int) -> list[Passage]:
    """Keep rank order but take at most ``per_source`` passages per file into the first ``k``;
    the passages set aside follow, in rank order, and fill any places left.

    >>> ps = [Passage(c, "", {"source": s}, 0.0) for c, s in [("a1", "a"), ("a2", "a"), ("b1", "b")]]
    >>> [p.chunk_id for p in diversify(ps, k=2, per_source=1)]
    ['a1', 'b1', 'a2']
    """
    picked: list[Passage] = []
    spare: list[Passage] = []
    counts: dict[str, int] = {}
    for p in passages:
        if len(picked) < k and counts.get(p.source, 0) < per_source:
            picked.append(p)
            counts[p.source] = counts.get(p.source, 0) + 1
        else:
            spare.append(p)
    return picked + spare


@dataclass
class _Bylined:
    """The files with an author in their front matter, and (when few enough) their chunks, so a
    question about "the article" is ranked inside them without another trip to Chroma; and every
    file's title, for questions that spell one out."""

    version: str
    bylines: dict[str, str]
    titles: dict[tuple[str, ...], str]  # title_phrases
    chunks: list[Passage] | None  # None: too many to keep in memory, search Chroma instead

    # Beyond this many chunks the bylined files are searched in Chroma.
    MAX_CACHED = 5000


def _named(passages: list[Passage]) -> list[Passage]:
    for p in passages:
        p.named = True
    return passages


class HybridRetriever:
    """Finds the ``top_k`` passages for a query.

    Collaborators are passed in (``collection``, ``embeddings``, ``lexical``) so tests can hand
    in an in-memory Chroma and fake embeddings.
    """

    def __init__(
        self,
        *,
        collection: Collection,
        embeddings: Embeddings,
        lexical: LexicalIndex | None,
        settings: Settings,
        titles: LexicalIndex | None = None,
    ) -> None:
        self.collection = collection
        self.embeddings = embeddings
        self.lexical = lexical
        self.titles = titles
        self.settings = settings
        self._bylines: _Bylined | None = None
        self._speller = SpellingCorrector(self._knows)

    def retrieve(
        self, query: str, k: int | None = None, sources: Sequence[str] | None = None
    ) -> list[Passage]:
        """The best ``k`` passages (default ``top_k``), only from ``sources`` files when given.

        Raises ``StoreUnavailableError`` (a plain message for users) when the Chroma server
        cannot be reached; the next call tries again, so the app recovers once it is back.
        """
        try:
            return self._retrieve(query, k, sources)
        except Exception as exc:
            import httpx  # the HTTP client's errors; chromadb depends on httpx

            if isinstance(exc, httpx.TransportError):
                s = self.settings
                raise StoreUnavailableError(
                    f"the Chroma server at {s.chroma_host}:{s.chroma_port} is not reachable"
                    f" ({type(exc).__name__}); please try again when it is back"
                ) from exc
            raise

    def _retrieve(self, query: str, k: int | None, sources: Sequence[str] | None) -> list[Passage]:
        s = self.settings
        k = k or s.top_k
        fetch_k = max(s.fetch_k, k)
        if s.correct_spelling and self.lexical is not None:
            query = self._speller.correct(query)
        # The routing below shapes the first ``top_k`` places, whatever ``k`` is asked for: the
        # eval's top 10 then begins with the 5 passages a user gets.
        top = s.top_k
        authored = s.route_authored and not sources and AUTHORED_REFERENCE.search(query)
        bylined = authored_reference(query, self.bylines()) if authored else []
        qvec = _unit(self.embeddings.embed_query(query))
        ordered = self._rank(query, qvec, sources, fetch_k)
        named = self.named_documents(query) if s.route_documents and not sources else []
        if named:
            # The question names its source(s): rank inside each named document as well, so a
            # passage of "the 2012 Factbook" is not buried under near-identical 2016 ones.
            lists = [ordered] + [_named(self._rank(query, qvec, [doc], top)) for doc in named]
            ordered = fuse_passages(lists, s.rrf_k)
        if bylined:
            # "According to the article": rank inside the documents that have an author as well,
            # so a long reference text on the same topic does not bury the opinion piece.
            ordered = fuse_passages([ordered, _named(self._rank_bylined(query, qvec, bylined, top))], s.rrf_k)
        parts = question_parts(query) if s.split_questions and not sources else []
        if parts:
            # A question that asks two things (often of two documents): rank each part on its
            # own too, and keep the best passage for each part in the top k.
            lists = [ordered]
            for part in parts:
                # Twice as deep as the top k (what the eval measured when this lever was kept):
                # 5 deep lost golden m04's evidence, 20 deep a held-out question's second source.
                ranked = self._rank(part, _unit(self.embeddings.embed_query(part)), None, 2 * top)
                for p in ranked:  # the similarity stays the one to the whole question
                    p.similarity = float(p.vector @ qvec)
                lists.append(ranked)
            ordered = fuse_passages(lists, s.rrf_k)
            ordered = reserve(ordered, [ranked[0] for ranked in lists[1:] if ranked], top)
        spelled = spelled_out(query, self.title_phrases()) if s.reserve_titled and not sources else []
        shown = {p.source for p in ordered[:top]}
        missing = [doc for doc in spelled if doc not in shown]
        if missing:
            # The question spells out a document's title and none of its passages made the top k:
            # keep its best passage there, so the document the user named is at least consulted.
            best = [self._rank(query, qvec, [doc], top)[:1] for doc in missing]
            ordered = reserve(ordered, [b[0] for b in best if b], top)
        if s.max_per_source:
            ordered = diversify(ordered, top, s.max_per_source)
        if s.mmr and len(ordered) > k:
            vectors = np.stack([p.vector for p in ordered])
            relevance = np.array([p.similarity for p in ordered])
            picks = mmr_order(qvec, vectors, relevance, k, s.mmr_lambda)
            return [ordered[i] for i in picks]
        return ordered[:k]

    def _knows(self, word: str) -> bool:
        return self.lexical is not None and self.lexical.knows(word)

    def bylines(self) -> dict[str, str]:
        """File -> its author, publication and title (lowercase), for the files whose front
        matter names an author; read from the collection once per index version. Empty when
        every file has an author (then "the article" narrows nothing)."""
        return self._bylined().bylines

    def title_phrases(self) -> dict[tuple[str, ...], str]:
        """``title_phrases`` of the indexed files, read from the collection once per index version."""
        return self._bylined().titles

    def _bylined(self) -> _Bylined:
        version = self.lexical.fingerprint if self.lexical is not None else str(self.collection.count())
        if self._bylines is None or self._bylines.version != version:
            metas = _all_metadatas(self.collection)
            found = {
                str(m.get("source", "")): ", ".join(
                    str(m.get(f, "")) for f in ("author", "publication", "published", "title")
                ).casefold()
                for m in metas
                if m.get("author")
            }
            if set(found) == {str(m.get("source", "")) for m in metas}:
                found = {}
            count = sum(1 for m in metas if str(m.get("source", "")) in found)
            chunks = None
            if found and count <= _Bylined.MAX_CACHED:
                where: Any = {"source": {"$in": sorted(found)}}
                got = self.collection.get(where=where, include=["documents", "metadatas", "embeddings"])
                vectors = got["embeddings"] if got["embeddings"] is not None else []
                zero = np.zeros(len(vectors[0]) if len(vectors) else 1, dtype=np.float32)
                chunks = [
                    self._passage(
                        cid, (got["documents"] or [])[i], (got["metadatas"] or [])[i], vectors[i], zero
                    )
                    for i, cid in enumerate(got["ids"])
                ]
            titles = {str(m.get("source", "")): str(m.get("title") or "") for m in metas}
            self._bylines = _Bylined(version, found, title_phrases(titles), chunks)
        return self._bylines

    def _rank_bylined(self, query: str, qvec: np.ndarray, sources: Sequence[str], k: int) -> list[Passage]:
        """``_rank`` inside the bylined ``sources``, from the cached chunks when there are any."""
        cached = self._bylined().chunks
        if cached is None:
            return self._rank(query, qvec, sources, k)
        wanted = set(sources)
        chunks = [p for p in cached if p.source in wanted]
        if not chunks:
            return []
        sims = np.stack([p.vector for p in chunks]) @ qvec
        found = {
            p.chunk_id: Passage(p.chunk_id, p.text, dict(p.metadata), float(sim), vector=p.vector)
            for p, sim in zip(chunks, sims, strict=True)
        }
        dense = [chunks[i].chunk_id for i in np.argsort(-sims, kind="stable")[:k]]
        rankings = [dense]
        s = self.settings
        if s.hybrid and self.lexical is not None:
            rankings.append([cid for cid, _ in self.lexical.search(query, k, set(found)) if cid in found])
        weights = [1.0, s.bm25_weight][: len(rankings)]
        return fuse_passages([[found[cid] for cid in ranking] for ranking in rankings], s.rrf_k, weights)

    def named_documents(self, query: str, limit: int = 3) -> list[str]:
        """Files whose title or byline the question names; none when it names no document in
        particular (a generic question matches many titles about equally).
        """
        if self.titles is None:
            return []
        # Naming one document in ten is naming a source; in a handful of documents, title
        # words are just the topic.
        limit = min(limit, len(self.titles.ids) // 10)
        if limit < 1:
            return []
        hits = self.titles.search(query, limit + 1)
        if not hits or hits[0][1] < self.settings.route_min_score:
            return []
        top = hits[0][1]
        close = [doc for doc, score in hits if score >= 0.8 * top]
        return close if len(close) <= limit else []

    def _rank(
        self, query: str, qvec: np.ndarray, sources: Sequence[str] | None, fetch_k: int
    ) -> list[Passage]:
        """Dense and BM25 rankings fused by reciprocal rank, optionally inside ``sources``."""
        s = self.settings
        where: Any = {"source": {"$in": list(sources)}} if sources else None
        dense = self.collection.query(
            query_embeddings=[qvec.tolist()],
            n_results=fetch_k,
            where=where,
            include=["documents", "metadatas", "embeddings"],
        )
        found: dict[str, Passage] = {}
        dense_ids = list(dense["ids"][0])
        for i, chunk_id in enumerate(dense_ids):
            found[chunk_id] = self._passage(
                chunk_id,
                (dense["documents"] or [[]])[0][i],
                (dense["metadatas"] or [[]])[0][i],
                (dense["embeddings"] if dense["embeddings"] is not None else [[]])[0][i],
                qvec,
            )
        rankings = [dense_ids]
        if s.hybrid and self.lexical is not None:
            allowed = self._ids_of(sources) if sources else None
            lexical_ids = [cid for cid, _ in self.lexical.search(query, fetch_k, allowed)]
            missing = [cid for cid in lexical_ids if cid not in found]
            if missing:
                got = self.collection.get(ids=missing, include=["documents", "metadatas", "embeddings"])
                vectors = got["embeddings"] if got["embeddings"] is not None else []
                for i, chunk_id in enumerate(got["ids"]):
                    found[chunk_id] = self._passage(
                        chunk_id,
                        (got["documents"] or [])[i],
                        (got["metadatas"] or [])[i],
                        vectors[i],
                        qvec,
                    )
            rankings.append([cid for cid in lexical_ids if cid in found])
        weights = [1.0, s.bm25_weight][: len(rankings)]
        return fuse_passages([[found[cid] for cid in ranking] for ranking in rankings], s.rrf_k, weights)

    def _ids_of(self, sources: Sequence[str]) -> set[str]:
        where: Any = {"source": {"$in": list(sources)}}
        got = self.collection.get(where=where, include=[])
        return set(got["ids"])

    @staticmethod
    def _passage(chunk_id: str, text: Any, meta: Any, vector: Any, qvec: np.ndarray) -> Passage:
        """``qvec`` is the question's unit vector (``_unit``), so a dot product is the cosine."""
        vec = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(vec)) or 1.0
        similarity = float(vec @ qvec) / norm
        return Passage(chunk_id, str(text or ""), dict(meta or {}), similarity, vector=vec / norm)


def _unit(vector: Any) -> np.ndarray:
    """``vector`` scaled to length 1 (the zero vector stays zero): the question's vector, once,
    so every passage's cosine to it is one dot product."""
    v = np.asarray(vector, dtype=np.float32)
    return v / (float(np.linalg.norm(v)) or 1.0)


def _all_metadatas(collection: Collection, page: int = 5000) -> list[dict[str, Any]]:
    """Every chunk's metadata, read a page at a time: one ``get`` of a whole large collection
    fails in Chroma ("too many SQL variables" at 100k chunks, bench/scale_bench.py)."""
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        got = collection.get(include=["metadatas"], limit=page, offset=offset)
        metas = got["metadatas"] or []
        out += [dict(m) for m in metas if m]
        if len(got["ids"]) < page:
            return out
        offset += page
