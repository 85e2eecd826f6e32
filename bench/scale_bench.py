"""Scale: one synthetic collection grown to 10k, 30k and 100k chunks in a Chroma server.

``chroma run --path DIR --port N`` serves the collection (client-server mode, as a deployment
past one machine would); the benchmark talks to it through ``chromadb.HttpClient``.

The synthetic chunks are generated deterministically (seeded) so that embedding 100k texts on
two cores is not needed:

- vectors: real MiniLM embeddings of the corpus's chunks (read from a built index), each copy
  perturbed by Gaussian noise of norm ``NOISE`` and renormalised (cosine about 0.9 to its
  source), so the collection keeps the clustered shape of real text embeddings rather than
  uniformly random directions;
- texts: words drawn (seeded) from the corpus vocabulary, as many as the source chunk has;
- metadata: source, title, chunk index and id, as ``rag.index.ingest`` stores them.

At each size: the add rate of the segment just added (batches of 5000 over HTTP), the first
query after it (which pays any index catch-up), then per golden question the Chroma query as
``HybridRetriever`` issues it (the 20 nearest, with documents, metadata and vectors) and the
same preceded by embedding the question with the real model, the server's resident memory
(VmRSS, VmHWM) and its folder size, and a self-query check (a stored vector finds itself first).
At the largest size, the whole ``HybridRetriever`` (question embedding, the server's dense query,
a BM25 index of the same chunks held in this process, fusion) is timed too, with the BM25
index's build time and memory.

Worker use (prints one JSON line)::

    python -m bench.scale_bench --data DIR_OF_BUILT_INDEX --work DIR [--sizes 10000,30000,100000]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CORPUS,
    PYTHON,
    free_port,
    golden,
    loadavg,
    log,
    now_iso,
    offline,
    proc_memory_mb,
    stop,
    summary_ms,
)

NOISE = 0.5
SEED = 20240611
BATCH = 5000  # below the server's max batch size (5461 here)
FETCH_K = 20


def folder_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1024 / 1024, 1)


def base_chunks(data: Path) -> tuple[Any, list[str]]:
    """The real vectors and texts of a built index of the corpus."""
    import chromadb
    import numpy as np
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(
        path=str(data / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    got = client.get_collection("corpus").get(include=["embeddings", "documents"])
    return np.asarray(got["embeddings"], dtype=np.float32), list(got["documents"] or [])


class Synthetic:
    """Deterministic synthetic chunks: ``batch(start, stop)`` is the same on every run."""

    def __init__(self, vectors: Any, texts: list[str]) -> None:
        import numpy as np

        self.vectors = vectors
        self.lengths = np.array([max(20, len(t.split())) for t in texts])
        words = sorted({w for t in texts for w in re.findall(r"[A-Za-z][A-Za-z'-]+", t)})
        self.vocab = np.array(words)

    def batch(self, start: int, stop: int) -> tuple[list[str], Any, list[str], list[dict[str, Any]]]:
        import numpy as np

        rng = np.random.default_rng([SEED, start])
        n = stop - start
        src = rng.integers(0, len(self.vectors), n)
        noise = rng.standard_normal((n, self.vectors.shape[1])).astype(np.float32)
        noise *= NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
        vecs = self.vectors[src] + noise
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        texts = []
        for length in self.lengths[src]:
            texts.append(" ".join(self.vocab[rng.integers(0, len(self.vocab), int(length))]))
        ids = [f"syn-{i:07d}" for i in range(start, stop)]
        metas = [
            {
                "source": f"synthetic/doc-{i // 40:05d}.md",
                "title": f"Synthetic document {i // 40}",
                "chunk_index": i % 40,
                "chunk_id": f"syn-{i:07d}",
            }
            for i in range(start, stop)
        ]
        return ids, vecs, texts, metas


def start_server(path: Path, log_path: Path) -> tuple[subprocess.Popen[Any], int]:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    port = free_port()
    chroma = str(Path(PYTHON).with_name("chroma"))
    out = log_path.open("w")
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.perf_counter() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma run exited ({proc.returncode}); see {log_path}")
        try:
            client = chromadb.HttpClient(
                host="127.0.0.1", port=port, settings=ChromaSettings(anonymized_telemetry=False)
            )
            client.heartbeat()
            return proc, port
        except Exception:
            if time.perf_counter() > deadline:
                stop(proc)
                raise
            time.sleep(0.2)


def own_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def hybrid_retrieval(
    collection: Any, synthetic: Synthetic, size: int, embeddings: Any, questions: list[str], settings: Any
) -> dict[str, Any]:
    """``HybridRetriever`` as the app runs it over the server's collection plus a BM25 index of it."""
    from rag.index.lexical import LexicalIndex
    from rag.retrieval import HybridRetriever

    log(f"scale: BM25 index of {size} chunks and the hybrid retriever")
    ids: list[str] = []
    texts: list[str] = []
    for start in range(0, size, BATCH):
        batch_ids, _, docs, metas = synthetic.batch(start, min(start + BATCH, size))
        ids += batch_ids
        # What rag.index.ingest gives BM25: title line, then the text.
        texts += [f"{m['title']}\n{d}" for m, d in zip(metas, docs, strict=True)]
    before = own_rss_mb()
    t0 = time.perf_counter()
    lexical = LexicalIndex.build(ids, texts)
    build_s = time.perf_counter() - t0
    del texts
    grown = own_rss_mb() - before
    retriever = HybridRetriever(
        collection=collection, embeddings=embeddings, lexical=lexical, settings=settings
    )
    for q in questions[:5]:
        retriever.invoke(q, k=settings.top_k)
    times = []
    for q in questions:
        t0 = time.perf_counter()
        retriever.invoke(q, k=settings.top_k)
        times.append(time.perf_counter() - t0)
    out = {
        "chunks": size,
        "bm25_build_s": round(build_s, 1),
        "bm25_rss_growth_mb": round(grown, 1),
        "retrieval": summary_ms(times),
    }
    log(
        f"  hybrid retrieval at {size}: p50 {out['retrieval']['p50_ms']} ms,"
        f" p95 {out['retrieval']['p95_ms']} ms"
    )
    return out


def measure(data: Path, work: Path, sizes: list[int], passes: int, hybrid: bool = True) -> dict[str, Any]:
    import chromadb
    import numpy as np
    from chromadb.config import Settings as ChromaSettings

    from rag.config import Settings
    from rag.index.embeddings import build_embeddings
    from rag.index.store import create_collection

    result: dict[str, Any] = {"date": now_iso(), "loadavg_before": loadavg(), "noise": NOISE, "seed": SEED}
    vectors, texts = base_chunks(data)
    synthetic = Synthetic(vectors, texts)
    result["base_chunks"] = len(texts)
    settings = Settings(_env_file=None, corpus_dir=CORPUS, data_dir=data)  # type: ignore[call-arg]
    embeddings = build_embeddings(settings)
    questions = [r["question"] for r in golden()]
    qvecs = [np.asarray(embeddings.embed_query(q), dtype=np.float32) for q in questions]

    server_dir = work / "chroma-server"
    shutil.rmtree(server_dir, ignore_errors=True)
    proc, port = start_server(server_dir, work / "chroma-server.log")
    points: list[dict[str, Any]] = []
    try:
        client = chromadb.HttpClient(
            host="127.0.0.1", port=port, settings=ChromaSettings(anonymized_telemetry=False)
        )
        result["server_max_batch"] = client.get_max_batch_size()
        result["server_memory_empty"] = proc_memory_mb(proc.pid)
        collection = create_collection(client, "synthetic", settings.embedding_model, int(vectors.shape[1]))
        have = 0
        for size in sizes:
            log(f"scale: growing to {size} chunks")
            add_s = gen_s = 0.0
            for start in range(have, size, BATCH):
                t0 = time.perf_counter()
                ids, vecs, docs, metas = synthetic.batch(start, min(start + BATCH, size))
                t1 = time.perf_counter()
                collection.add(ids=ids, embeddings=vecs, documents=docs, metadatas=metas)  # type: ignore[arg-type]
                add_s += time.perf_counter() - t1
                gen_s += t1 - t0
            added = size - have
            have = size
            point: dict[str, Any] = {
                "chunks": size,
                "count": collection.count(),
                "added": added,
                "add_s": round(add_s, 2),
                "add_rate_per_s": round(added / add_s, 1),
                "generate_s": round(gen_s, 2),
            }
            measured = time.perf_counter()
            include: Any = ["documents", "metadatas", "embeddings", "distances"]
            t0 = time.perf_counter()
            collection.query(query_embeddings=[qvecs[0]], n_results=FETCH_K, include=include)
            point["first_query_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            query_s: list[float] = []
            embed_query_s: list[float] = []
            for _ in range(passes):
                for q, qv in zip(questions, qvecs, strict=True):
                    t0 = time.perf_counter()
                    collection.query(query_embeddings=[qv], n_results=FETCH_K, include=include)
                    query_s.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    v = embeddings.embed_query(q)
                    collection.query(query_embeddings=[v], n_results=FETCH_K, include=include)
                    embed_query_s.append(time.perf_counter() - t0)
            point["query"] = summary_ms(query_s)
            point["embed_and_query"] = summary_ms(embed_query_s)
            rng = np.random.default_rng(size)
            probe = sorted(int(i) for i in rng.choice(size, 50, replace=False))
            probe_ids = [f"syn-{i:07d}" for i in probe]
            stored = collection.get(ids=probe_ids, include=["embeddings"])
            by_id = dict(zip(stored["ids"], stored["embeddings"], strict=True))  # type: ignore[arg-type]
            hits = collection.query(query_embeddings=[by_id[i] for i in probe_ids], n_results=1, include=[])
            point["self_recall_at_1"] = sum(
                got[0] == want for got, want in zip(hits["ids"], probe_ids, strict=True)
            ) / len(probe_ids)
            point["server_memory"] = proc_memory_mb(proc.pid)
            point["disk_mb"] = folder_mb(server_dir)
            point["loadavg"] = loadavg()
            point["measure_s"] = round(time.perf_counter() - measured, 1)
            log(
                f"  {size}: add {point['add_rate_per_s']}/s, query p50 {point['query']['p50_ms']} ms"
                f" p95 {point['query']['p95_ms']} ms, server RSS {point['server_memory']['vmrss_mb']} MB"
            )
            points.append(point)
        if hybrid:
            result["hybrid_at_largest"] = hybrid_retrieval(
                collection, synthetic, sizes[-1], embeddings, questions, settings
            )
    finally:
        stop(proc)
        shutil.rmtree(server_dir, ignore_errors=True)
    result["points"] = points
    result["loadavg_after"] = loadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="data dir of a built index of the corpus")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder")
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    offline()
    args.work.mkdir(parents=True, exist_ok=True)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(json.dumps(measure(args.data.resolve(), args.work.resolve(), sizes, args.passes)))


if __name__ == "__main__":
    main()
