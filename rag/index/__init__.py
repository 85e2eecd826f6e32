"""The index layer: documents -> passages -> embeddings -> Chroma and BM25, kept in step with the
corpus folder by an incremental ingest.

``documents`` loads files, ``splitting`` cuts them into passages, ``embeddings`` (with its
``openvino`` backend and ``parallel`` wrapper) embeds them, ``store`` holds the vectors in
Chroma, ``lexical`` the BM25 indexes, ``manifest`` records what is indexed, and ``ingest`` brings
it all in line with the corpus. Every problem a user must fix is an ``IndexProblem``
(``rag.index.store``).
"""
