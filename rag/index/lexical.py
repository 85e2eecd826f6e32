"""The BM25 keyword index (bm25s), kept in step with the Chroma collection.

Dense search finds paraphrases; BM25 finds exact terms (figures, section numbers, names). The
index is rebuilt from the collection's own contents whenever an ingest changes anything, and it
stores a fingerprint of the chunk ids it was built from, so a stale index is detected at load.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

IDS_FILE = "ids.json"


# Part of the fingerprint: bump it when tokenisation changes, so saved indexes are rebuilt.
TOKENIZER_VERSION = "stem-en-1"


def fingerprint(ids: Iterable[str]) -> str:
    digest = hashlib.sha256(TOKENIZER_VERSION.encode())
    for chunk_id in sorted(ids):
        digest.update(chunk_id.encode())
        digest.update(b"\n")
    return digest.hexdigest()


@cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def _tokenize(texts: list[str]) -> Any:
    import bm25s

    # Stemming lets "negotiations" find "negotiate"; the same stemmer runs on queries.
    return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer().stemWords, show_progress=False)


@dataclass
class LexicalIndex:
    """BM25 over chunk texts; ``search`` returns ``(chunk_id, score)`` pairs, best first."""

    ids: list[str]
    fingerprint: str
    _bm25: Any
    _id_set: set[str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, ids: list[str], texts: list[str], fingerprint_of: str | None = None) -> LexicalIndex:
        """Index ``texts`` under ``ids``; ``fingerprint_of`` names the chunk set it stands for
        (default: the fingerprint of ``ids``)."""
        import bm25s

        bm25 = bm25s.BM25()
        if texts:
            bm25.index(_tokenize(texts), show_progress=False)
        return cls(list(ids), fingerprint_of or fingerprint(ids), bm25)

    def search(self, query: str, k: int, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """Best ``k`` chunks for ``query``; only chunk ids in ``allowed`` when it is given."""
        if not self.ids or k <= 0:
            return []
        tokens = _tokenize([query])
        if not any(tokens.ids):
            return []
        mask = None
        if allowed is not None:
            mask = np.fromiter((cid in allowed for cid in self.ids), dtype=np.float32, count=len(self.ids))
            if not mask.any():
                return []
        k = min(k, len(self.ids))
        # n_threads=0 scores in this thread; 1 starts a worker thread per query (0.5-3 ms here).
        docs, scores = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=0, weight_mask=mask)
        return [(self.ids[int(i)], float(s)) for i, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def holds(self, chunk_id: str) -> bool:
        """Whether ``chunk_id`` is one of the chunks this index was built from."""
        if self._id_set is None or len(self._id_set) != len(self.ids):
            self._id_set = set(self.ids)
        return chunk_id in self._id_set

    def knows(self, word: str) -> bool:
        """Whether some indexed chunk holds ``word`` (compared stemmed, as the search does); the
        stopwords the index leaves out ("will", "if") count as held."""
        from bm25s.stopwords import STOPWORDS_EN

        lower = word.lower()
        vocabulary = getattr(self._bm25, "vocab_dict", None) or {}
        return lower in STOPWORDS_EN or _stemmer().stemWord(lower) in vocabulary

    def save(self, directory: Path) -> None:
        # Write next to the target and swap, so a crash never leaves a half-written index.
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.ids:
            self._bm25.save(str(tmp), show_progress=False)
        (tmp / IDS_FILE).write_text(json.dumps({"fingerprint": self.fingerprint, "ids": self.ids}))
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex | None:
        """The saved index, or None when there is none (or it cannot be read)."""
        import bm25s

        try:
            meta = json.loads((directory / IDS_FILE).read_text())
            ids = list(meta["ids"])
            bm25 = bm25s.BM25.load(str(directory), show_progress=False) if ids else bm25s.BM25()
        except (OSError, ValueError, KeyError):
            return None
        return cls(ids, str(meta["fingerprint"]), bm25)
