"""The sentence reader: a small cross-encoder, trained on this corpus by ``rag tune``, that reads
a question and a candidate sentence together and gives the probability that the sentence states
the answer.

It is loaded on first use, never at import, and only when ``rag tune`` has saved one for this
corpus (see ``rag.tuning``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings


class SentenceReader:
    """Scores (question, sentence) pairs with the cross-encoder saved in ``path``."""

    def __init__(self, path: Path, *, threads: int | None = None, batch_size: int = 64) -> None:
        self.path = path
        self.threads = threads
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                import torch
                from sentence_transformers import CrossEncoder

                if self.threads:
                    torch.set_num_threads(self.threads)
                self._model = CrossEncoder(str(self.path), device="cpu")
            return self._model

    def score(self, question: str, texts: Sequence[str]) -> np.ndarray:
        """P(the sentence answers the question) for each of ``texts``."""
        if not texts:
            return np.zeros(0)
        import torch

        model = self._load()
        # Raw logits, then the sigmoid here: the activation a saved model declares depends on how
        # it was trained, and the probability must mean the same for every reader.
        logits = model.predict(
            [(question, t) for t in texts],
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            activation_fn=torch.nn.Identity(),
        )
        return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64))))


def reader_dir(settings: Settings) -> Path:
    """Where ``rag tune`` saves the reader for this data directory."""
    return settings.tune_dir / "reader"


def tuned_reader(settings: Settings) -> SentenceReader | None:
    """The reader ``rag tune`` saved, with ``RAG_READER=on`` and when there is one."""
    path = reader_dir(settings)
    if settings.reader != "on" or not (path / "tune.json").is_file():
        return None
    return SentenceReader(path, threads=settings.llm_threads)
