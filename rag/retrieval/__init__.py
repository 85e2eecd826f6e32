"""The retrieval layer: the passages that answer a question, best first.

``HybridRetriever`` (``retriever``) fuses dense search in Chroma with BM25; the routing rules
(``routing``), fusion (``fusion``) and typo correction (``spelling``) shape its ranking; a
``Passage`` (``passage``) is one result. Answering uses this package's API.
"""

from rag.retrieval.fusion import fuse_passages
from rag.retrieval.passage import Passage
from rag.retrieval.retriever import HybridRetriever

__all__ = ["HybridRetriever", "Passage", "fuse_passages"]
