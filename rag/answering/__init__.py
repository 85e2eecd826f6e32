"""The answering layer and the one API front ends use (web chat, Slack, CLI, evals).

Front ends import from here, ``rag.config`` and ``rag.runtime`` (plus the shared front-end helpers
``rag.feedback`` and ``rag.ratelimit``); ``tests/test_layers.py`` checks it::

    from rag.answering import IndexProblem, open_assistant

    assistant = open_assistant(settings, ensure_index=True)
    for event in assistant.stream("Who wrote it?", history):
        ...   # Delta pieces, then one Answer

Inside: ``assistant`` (wiring, ``open_assistant``), ``chain`` (condense -> retrieve -> answer ->
cite), ``library`` (the documents service, ``open_library``: list, read, upload, remove),
``types``, ``questions``, ``condense``, ``verification``, ``facts`` (the strict check of a
written sentence's numbers, dates and names), ``citations``, ``runnable`` (the assistant as a
LangChain ``Runnable``), the answerers
(``extractive``, ``chat_model``, ``llamacpp``, and ``judged``: the local model judging the
extractive quotes), ``llm_files`` (installing the local model) and ``prompts``.
"""

from rag.answering.assistant import Assistant, index_status, open_assistant, refresh_index, update_index
from rag.answering.chain import TurnState
from rag.answering.chat_model import build_openai_model, chat_model_judge
from rag.answering.citations import MARKER, markers_in, strip_markers
from rag.answering.library import open_library
from rag.answering.llamacpp import llamacpp_judge
from rag.answering.llm_files import install_model, model_path
from rag.answering.questions import check_question
from rag.answering.runnable import AssistantRunnable
from rag.answering.types import (
    Answer,
    Answerer,
    AnswererError,
    Citation,
    Delta,
    QuestionError,
    Sentence,
    Turn,
)
from rag.answering.verification import Verifier, verify_by_match
from rag.index.embeddings import build_embeddings, embedding_name
from rag.index.ingest import IngestBusyError
from rag.index.library import DocumentInfo, DocumentLibrary, DocumentNotFoundError, Upload, UploadResult
from rag.index.store import IndexProblem
from rag.retrieval import Passage
from rag.text import normalise, plain_brackets, split_claims, split_sentences

__all__ = [
    "MARKER",
    "Answer",
    "Answerer",
    "AnswererError",
    "Assistant",
    "AssistantRunnable",
    "Citation",
    "Delta",
    "DocumentInfo",
    "DocumentLibrary",
    "DocumentNotFoundError",
    "IndexProblem",
    "IngestBusyError",
    "Passage",
    "QuestionError",
    "Sentence",
    "Turn",
    "TurnState",
    "Upload",
    "UploadResult",
    "Verifier",
    "build_embeddings",
    "build_openai_model",
    "chat_model_judge",
    "check_question",
    "embedding_name",
    "index_status",
    "install_model",
    "llamacpp_judge",
    "markers_in",
    "model_path",
    "normalise",
    "open_assistant",
    "open_library",
    "plain_brackets",
    "refresh_index",
    "split_claims",
    "split_sentences",
    "strip_markers",
    "update_index",
    "verify_by_match",
]
