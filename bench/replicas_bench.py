"""Two app replicas behind Caddy against one Chroma server: the set-up of compose.yaml, run as
plain processes on one machine (docs/scaling.md, "Measured: two replicas").

    python -m bench.replicas_bench [--questions 30] [--users 8]

Steps: ``chroma run``; the one-shot ``rag ingest`` of corpus/ into it; two ``python app.py``
replicas (``RAG_INGEST_ON_START=false``, empty data folders); Caddy with ``deploy/Caddyfile``
in front (needs the ``caddy`` binary: Debian's package). Measured: each replica's start, the
latency of sequential ``/ask`` questions to each replica and through the proxy, concurrent users
against one replica and against the proxy, memory, and how long after a second ingest both
replicas answer from the new document without a restart. Writes ``bench/replicas_results.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CORPUS,
    PYTHON,
    REPO,
    WORK,
    child_env,
    free_port,
    golden,
    loadavg,
    log,
    machine,
    now_iso,
    proc_memory_mb,
    stop,
    summary_ms,
    wait_http,
)

RESULTS = REPO / "bench" / "replicas_results.json"
NEW_DOCUMENT = """---
title: "Zeppelin Hangars of Lake Constance"
---

# Zeppelin Hangars of Lake Constance

The floating zeppelin hangar at Manzell on Lake Constance was built in 1900 and could turn with
the wind, so that airships could be brought out whatever its direction.
"""
NEW_QUESTION = "Which zeppelin hangar on Lake Constance could turn with the wind?"


def ask_many(url: str, questions: list[str]) -> tuple[list[float], list[dict[str, Any]]]:
    from gradio_client import Client

    client = Client(url, verbose=False)
    seconds, answers = [], []
    for question in questions:
        started = time.perf_counter()
        answers.append(client.predict(question=question, api_name="/ask"))
        seconds.append(time.perf_counter() - started)
    return seconds, answers


def concurrent(url: str, questions: list[str], users: int, per_user: int) -> dict[str, Any]:
    """``users`` clients at once, each asking ``per_user`` questions; latency and throughput."""
    seconds: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def user(n: int) -> None:
        mine = [questions[(n * per_user + i) % len(questions)] for i in range(per_user)]
        try:
            took, _ = ask_many(url, mine)
            with lock:
                seconds.extend(took)
        except Exception as exc:  # noqa: BLE001 - counted, reported
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        **summary_ms(seconds),
        "errors": len(errors),
        "wall_s": round(wall, 2),
        "answers_per_s": round(len(seconds) / wall, 2),
    }


def questions_logged(log_path: Path) -> int:
    lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
    return sum(1 for x in lines if x.get("event") == "question")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--per-user", type=int, default=5)
    parser.add_argument(
        "--models", type=Path, default=REPO / ".rag" / "models", help="the converted embedding model"
    )
    args = parser.parse_args()
    caddy = shutil.which("caddy")
    if caddy is None:
        raise SystemExit("caddy is not installed (Debian: apt-get install caddy)")
    work = WORK / f"replicas-{int(time.time())}"
    corpus = work / "corpus"
    shutil.copytree(CORPUS, corpus)
    procs: list[subprocess.Popen[Any]] = []
    results: dict[str, Any] = {"when": now_iso(), "machine": machine(), "load_before": loadavg()}
    questions = [r["question"] for r in golden() if not r.get("history")][: args.questions]
    env = child_env(RAG_MODEL_CACHE_DIR=str(args.models), RAG_CORPUS_DIR=str(corpus))
    try:
        chroma_port = free_port()
        chroma = subprocess.Popen(
            [
                str(Path(PYTHON).with_name("chroma")),
                "run",
                "--path",
                str(work / "chroma"),
                "--port",
                str(chroma_port),
            ],
            stdout=(work / "chroma.log").open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        procs.append(chroma)
        wait_http(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", 60, chroma)
        store = {"RAG_CHROMA_HOST": "127.0.0.1", "RAG_CHROMA_PORT": str(chroma_port)}

        def run_ingest() -> float:
            started = time.perf_counter()
            subprocess.run(
                [str(Path(PYTHON).with_name("rag")), "ingest"],
                env={**env, **store, "RAG_DATA_DIR": str(work / "writer")},
                check=True,
                capture_output=True,
            )
            return time.perf_counter() - started

        log("ingest (the one writer)")
        results["ingest_s"] = round(run_ingest(), 2)

        replicas: list[dict[str, Any]] = []
        for n in (1, 2):
            port = free_port()
            log_path = work / f"app-{n}.log"
            started = time.perf_counter()
            proc = subprocess.Popen(
                [PYTHON, str(REPO / "app.py")],
                cwd=work,
                env={
                    **env,
                    **store,
                    "RAG_DATA_DIR": str(work / f"app-{n}"),
                    "RAG_INGEST_ON_START": "false",
                    "RAG_PORT": str(port),
                    "RAG_RATE_LIMIT_PER_MINUTE": "0",
                    "RAG_INDEX_CHECK_S": "2",
                    "RAG_LOG_FORMAT": "json",
                },
                stdout=log_path.open("wb"),
                stderr=subprocess.STDOUT,
            )
            procs.append(proc)
            replicas.append(
                {"url": f"http://127.0.0.1:{port}/", "proc": proc, "log": log_path, "t0": started}
            )
        for r in replicas:
            wait_http(r["url"], 180, r["proc"])
            r["start_s"] = round(time.perf_counter() - r["t0"], 2)  # both started at once
        log(f"replicas up in {[r['start_s'] for r in replicas]} s")

        proxy_port = free_port()
        proxy = subprocess.Popen(
            [caddy, "run", "--config", str(REPO / "deploy" / "Caddyfile"), "--adapter", "caddyfile"],
            env={
                **env,
                "PROXY_PORT": str(proxy_port),
                "RAG_UPSTREAMS": " ".join(r["url"].removeprefix("http://").rstrip("/") for r in replicas),
                "RAG_HEALTH_URI": "/",
                "XDG_DATA_HOME": str(work / "caddy-data"),
                "XDG_CONFIG_HOME": str(work / "caddy-config"),
            },
            stdout=(work / "caddy.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(proxy)
        proxy_url = f"http://127.0.0.1:{proxy_port}/"
        wait_http(proxy_url, 30, proxy)

        log("sequential questions")
        keys: dict[str, list[Any]] = {}
        for name, url in [("app-1", replicas[0]["url"]), ("app-2", replicas[1]["url"]), ("proxy", proxy_url)]:
            ask_many(url, questions[:2])  # warm-up: first requests load lazily
            took, answers = ask_many(url, questions)
            results[f"sequential_{name}"] = summary_ms(took)
            keys[name] = [(a["answer"], [c["chunk_id"] for c in a["citations"]]) for a in answers]
        results["replicas_answer_alike"] = keys["app-1"] == keys["app-2"] == keys["proxy"]

        log("concurrent users")
        before = [questions_logged(r["log"]) for r in replicas]
        results["concurrent_one_replica"] = concurrent(
            replicas[0]["url"], questions, args.users, args.per_user
        )
        middle = [questions_logged(r["log"]) for r in replicas]
        results["concurrent_proxy"] = concurrent(proxy_url, questions, args.users, args.per_user)
        after = [questions_logged(r["log"]) for r in replicas]
        results["proxy_spread"] = {f"app-{n + 1}": after[n] - middle[n] for n in range(2)}
        results["one_replica_spread"] = {f"app-{n + 1}": middle[n] - before[n] for n in range(2)}
        results["memory"] = {f"app-{n + 1}": proc_memory_mb(r["proc"].pid) for n, r in enumerate(replicas)}
        results["memory"]["chroma"] = proc_memory_mb(chroma.pid)
        results["memory"]["caddy"] = proc_memory_mb(proxy.pid)

        log("a second ingest; replicas pick it up")
        (corpus / "zeppelin-hangars.md").write_text(NEW_DOCUMENT)
        results["second_ingest_s"] = round(run_ingest(), 2)
        done = time.perf_counter()
        picked: dict[str, float] = {}
        while len(picked) < 2 and time.perf_counter() - done < 60:
            for n, r in enumerate(replicas):
                name = f"app-{n + 1}"
                if name in picked:
                    continue
                _, (answer,) = ask_many(r["url"], [NEW_QUESTION])
                if any(c["source"] == "zeppelin-hangars.md" for c in answer["citations"]):
                    picked[name] = round(time.perf_counter() - done, 2)
            time.sleep(0.2)
        results["new_document_answered_after_s"] = picked
        results["replica_data_written"] = {
            f"app-{n + 1}": sorted(str(p.relative_to(work)) for p in (work / f"app-{n + 1}").rglob("*"))
            for n in range(2)
        }
        results["start_s"] = {f"app-{n + 1}": r["start_s"] for n, r in enumerate(replicas)}
        results["load_after"] = loadavg()
    finally:
        for proc in reversed(procs):
            stop(proc)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
