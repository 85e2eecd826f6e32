"""Sentence-transformers models run by OpenVINO: the same vectors, about 1.6x faster on this CPU.

OpenVINO fuses the encoder's attention and runs it, with the linear layers, in bf16 on CPUs
that have it natively: the corpus embedded in 6.7 s against 10.8 s for PyTorch bf16, with mean
cosine 0.99999 to PyTorch fp32 (bench/RESULTS.md). Only the encoder runs in OpenVINO; tokenizing
(the model's own ``tokenizer.json``), pooling and normalising follow the model's
sentence-transformers configuration, and models this module does not understand raise
``UnsupportedModelError`` so the caller falls back to PyTorch.

The encoder is converted from PyTorch once, then kept as OpenVINO IR in ``cache_dir``; later
starts read the IR and never import torch, which keeps the web app's start-up and memory small.

    embeddings = OpenVINOEmbeddings.load(model_dir, cache_dir, bf16=True, streams=2)
    vectors = embeddings.embed_documents(texts)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:
    from openvino import CompiledModel

IR_NAME = "encoder.xml"
# Every text is padded to a multiple of this many tokens (see ``OpenVINOEmbeddings._width``).
PAD_MULTIPLE = 32
log = logging.getLogger(__name__)


class UnsupportedModelError(Exception):
    """The model folder is not a plain Transformer -> Pooling (mean or CLS) [-> Normalize] stack."""


@dataclass(frozen=True)
class ModelLayout:
    """What the sentence-transformers folder says about running its encoder."""

    max_length: int
    pooling: str  # "mean" or "cls"
    normalize: bool
    dim: int

    @classmethod
    def read(cls, model_dir: Path) -> ModelLayout:
        try:
            modules = json.loads((model_dir / "modules.json").read_text())
            types = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
            if types[:2] != ["Transformer", "Pooling"] or any(t != "Normalize" for t in types[2:]):
                raise UnsupportedModelError(f"modules {types} are not Transformer, Pooling[, Normalize]")
            pooling_dir = model_dir / str(modules[1]["path"])
            pooling = json.loads((pooling_dir / "config.json").read_text())
            st_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise UnsupportedModelError(f"not a sentence-transformers folder: {exc}") from exc
        # sentence-transformers before 5 writes one flag per mode ("pooling_mode_mean_tokens":
        # true); later versions, which save the model `rag tune` trains, one name ("pooling_mode":
        # "mean") and "embedding_dimension".
        if isinstance(pooling.get("pooling_mode"), str):
            modes = [str(pooling["pooling_mode"])]
        else:
            modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
        if modes in (["pooling_mode_mean_tokens"], ["mean"]):
            mode = "mean"
        elif modes in (["pooling_mode_cls_token"], ["cls"]):
            mode = "cls"
        else:
            raise UnsupportedModelError(f"pooling {modes} (only mean or CLS pooling)")
        dim = pooling.get("word_embedding_dimension", pooling.get("embedding_dimension"))
        if not isinstance(dim, int):
            raise UnsupportedModelError("the pooling config gives no embedding dimension")
        max_length = st_config.get("max_seq_length")
        if not max_length:  # current sentence-transformers keep it in the tokenizer's config
            try:
                tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text())
                max_length = tokenizer_config.get("model_max_length")
            except (OSError, ValueError):
                max_length = None
        return cls(
            max_length=int(max_length or 512),
            pooling=mode,
            normalize="Normalize" in types,
            dim=dim,
        )


class OpenVINOEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` over an OpenVINO-compiled sentence-transformers encoder.

    ``embed_documents`` sorts texts by length (little padding) and keeps ``streams`` batches in
    flight, one per core; ``embed_query`` is safe to call from many threads at once (each thread
    has its own inference request).
    """

    def __init__(
        self, compiled: CompiledModel, tokenizer: Any, layout: ModelLayout, *, batch_size: int, streams: int
    ) -> None:
        self.compiled = compiled
        self.tokenizer = tokenizer
        self.layout = layout
        self.batch_size = max(1, batch_size)
        self.streams = max(1, streams)
        self._inputs = {port.get_any_name() for port in compiled.inputs}
        self._local = threading.local()

    @classmethod
    def load(
        cls, model_dir: Path, cache_dir: Path, *, bf16: bool, streams: int, batch_size: int = 16
    ) -> OpenVINOEmbeddings:
        """Read (converting on first use) and compile the encoder of the model in ``model_dir``."""
        from tokenizers import Tokenizer

        ov = _openvino()

        layout = ModelLayout.read(model_dir)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # The file may carry fixed padding and a shorter truncation for other uses; ours are the
        # sentence-transformers ones: no padding (batches are padded to their longest text).
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=layout.max_length)
        ir = ensure_ir(model_dir, cache_dir)
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": str(max(1, streams)),
        }
        core = ov.Core()
        compiled = core.compile_model(core.read_model(ir), "CPU", config)
        return cls(compiled, tokenizer, layout, batch_size=batch_size, streams=streams)

    # --- LangChain Embeddings ------------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        AsyncInferQueue = _openvino().AsyncInferQueue  # noqa: N806 - the class, under its own name

        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(texts), self.layout.dim), dtype=np.float32)
        filled = np.zeros(len(texts), dtype=bool)
        errors: list[BaseException] = []
        queue = AsyncInferQueue(self.compiled, self.streams)

        def done(request: Any, rows: list[int]) -> None:
            # Runs on OpenVINO's threads, where an exception would only be printed: keep it, and
            # never let a batch that failed leave zero vectors behind unnoticed.
            try:
                mask = request.get_tensor("attention_mask").data
                out[rows] = self._pool(request.get_output_tensor(0).data, mask)
                filled[rows] = True
            except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
                errors.append(exc)

        queue.set_callback(done)
        for rows in self._batches(order, [self._width(len(row)) for row in ids]):
            queue.start_async(self._feed([ids[i] for i in rows]), rows)
        queue.wait_all()
        if errors:
            raise RuntimeError(f"embedding failed: {errors[0]}") from errors[0]
        if not filled.all():
            raise RuntimeError(f"embedding returned no vector for {int((~filled).sum())} texts")
        return out.tolist()

    def embed_query(self, text: str) -> list[float]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        feed = self._feed([self.tokenizer.encode(text).ids])
        request.infer(feed)
        vector = self._pool(request.get_output_tensor(0).data, feed["attention_mask"])
        return [float(x) for x in vector[0]]

    def get_sentence_embedding_dimension(self) -> int:
        return self.layout.dim

    # --- internals -----------------------------------------------------------------------------

    def _width(self, tokens: int) -> int:
        """The padded length a text of ``tokens`` tokens is always run at, alone or in a batch.

        In bf16 a text's vector depends on how far its batch was padded (up to 4e-4 per
        dimension here), not on the other rows: padding every text to the same bucket makes its
        vector the same in any batch, in a query, in a fresh index or an updated one.
        """
        bucket = -(-max(1, tokens) // PAD_MULTIPLE) * PAD_MULTIPLE
        return min(bucket, max(tokens, self.layout.max_length))

    def _batches(self, order: list[int], widths: list[int]) -> Iterator[list[int]]:
        """``order`` cut into batches of at most ``batch_size`` rows that share one padded width."""
        batch: list[int] = []
        for i in order:
            if batch and (len(batch) == self.batch_size or widths[i] != widths[batch[0]]):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _feed(self, batch: list[list[int]]) -> dict[str, np.ndarray]:
        width = self._width(max(len(row) for row in batch))
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for r, row in enumerate(batch):
            input_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        return feed

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        hidden = hidden.astype(np.float32, copy=False)
        if self.layout.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            vectors = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        if self.layout.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


def ensure_ir(model_dir: Path, cache_dir: Path) -> Path:
    """The OpenVINO IR of the model's encoder in ``cache_dir``, converted from PyTorch if missing.

    The folder name hashes the model's weights and config and the OpenVINO version, so a changed
    model or runtime gets a fresh conversion. Conversion writes to a temporary folder that is
    renamed into place, so a second process never reads a half-written file.
    """
    ov = _openvino()
    target = cache_dir / _ir_key(model_dir, ov.__version__)
    if (target / IR_NAME).is_file():
        return target / IR_NAME
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=cache_dir))
    try:
        ov.save_model(_convert(model_dir), str(tmp / IR_NAME), compress_to_fp16=False)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / IR_NAME).is_file():  # another process won the race if it exists
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / IR_NAME


def _convert(model_dir: Path) -> Any:
    import torch
    import transformers
    from transformers import AutoModel

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()  # config notes meant for training
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    example = {
        "input_ids": torch.ones((2, 8), dtype=torch.long),
        "attention_mask": torch.ones((2, 8), dtype=torch.long),
    }
    if "token_type_ids" in model.forward.__code__.co_varnames:
        example["token_type_ids"] = torch.zeros((2, 8), dtype=torch.long)
    # Batch and length stay dynamic; output 0 is the token states (pooling runs in numpy).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warnings about the model's Python branches
        return _openvino().convert_model(model, example_input=example)


def _openvino() -> ModuleType:
    """``import openvino`` with its usage telemetry unavailable.

    Importing OpenVINO reports an "import" event to Google Analytics, and converting a model
    reports more, unless the user opted out in ``~/intel``; an app that promises to run offline
    and send nothing anywhere must not do that. OpenVINO's tools fall back to a no-op stub when
    ``openvino_telemetry`` cannot be imported, so it is made unimportable before the first import.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    elif sys.modules.get("openvino_telemetry") is not None:
        log.warning("OpenVINO was imported elsewhere first; its telemetry may be active")
    import openvino

    return openvino


def _ir_key(model_dir: Path, runtime: str) -> str:
    digest = hashlib.sha256(runtime.encode())
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and path.suffix in (".json", ".safetensors", ".bin", ".txt"):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return f"{model_dir.name}-{digest.hexdigest()[:16]}"
