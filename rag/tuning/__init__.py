"""Teaching the small bundled models this corpus: questions written by the local LLM from the
documents' own sentences, and a sentence scorer trained on them (``rag tune``)."""

from rag.tuning.run import TuneReport, tune

__all__ = ["TuneReport", "tune"]
