"""The retrieval layer: the passages that answer a question, best first.

``HybridRetriever`` (``retriever``) fuses dense search in Chroma with BM25; the routing rules
(``routing``), fusion (``fusion``) and typo correction (``spelling``) shape its ranking. Answering
uses this package's API: ``Passage``, ``HybridRetriever`` and ``fuse_passages``.
"""

from rag.retrieval.retriever import HybridRetriever, Passage, fuse_passages

__all__ = ["HybridRetriever", "Passage", "fuse_passages"]
