"""The web app as users meet it: cold start, 16 concurrent API users, peak memory.

``python app.py`` starts on a free loopback port over an already built index (default settings
otherwise); "ready" is the first HTTP 200 on ``/``. Then ``users`` threads, each its own
``gradio_client.Client``, ask ``per_user`` golden questions through the documented ``/ask``
endpoint (follow-ups with their history), all released at once. Each user sends its own
``X-Forwarded-For`` address, as a reverse proxy on the same host would, so the app's per-user
rate limit (default 30 questions a minute) counts each user apart: uvicorn trusts that header
from 127.0.0.1 by default. Peak RSS is the app process's VmHWM at the end (no LLM loaded).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CORPUS,
    PYTHON,
    REPO,
    child_env,
    free_port,
    golden,
    loadavg,
    log,
    now_iso,
    proc_memory_mb,
    stop,
    summary_ms,
    wait_http,
)


def _user(
    url: str,
    user: int,
    questions: list[dict[str, Any]],
    start: threading.Barrier,
    out: list[dict[str, Any]],
) -> None:
    from gradio_client import Client

    t0 = time.perf_counter()
    try:
        client = Client(url, verbose=False, headers={"X-Forwarded-For": f"10.0.0.{user + 1}"})
    except Exception as exc:  # noqa: BLE001 - every failure is a figure of the benchmark
        start.wait()
        out.append({"user": user, "ok": False, "error": f"connect: {type(exc).__name__}: {exc}"})
        return
    connect_s = time.perf_counter() - t0
    start.wait()
    for row in questions:
        t0 = time.perf_counter()
        try:
            got = client.predict(question=row["question"], history=row.get("history") or [], api_name="/ask")
            ok, error = bool(got.get("answer")), None if got.get("answer") else "empty answer"
        except Exception as exc:  # noqa: BLE001 - every failure is a figure of the benchmark
            ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
        out.append(
            {
                "user": user,
                "id": row["id"],
                "ok": ok,
                "error": error,
                "seconds": time.perf_counter() - t0,
                "end": time.perf_counter(),
                "connect_s": connect_s,
            }
        )


def load_test(url: str, users: int, per_user: int) -> dict[str, Any]:
    rows = golden()
    start = threading.Barrier(users + 1)
    out: list[dict[str, Any]] = []
    threads = []
    for u in range(users):
        mine = [rows[(u * per_user + i) % len(rows)] for i in range(per_user)]
        t = threading.Thread(target=_user, args=(url, u, mine, start, out), daemon=True)
        t.start()
        threads.append(t)
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join(timeout=900)
    wall = max((r["end"] for r in out if "end" in r), default=time.perf_counter()) - began
    ok = [r for r in out if r["ok"]]
    failed = [r for r in out if not r["ok"]]
    return {
        "users": users,
        "requests": users * per_user,
        "completed": len(ok),
        "failed": len(failed),
        "errors": sorted({r["error"] for r in failed})[:5],
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(ok) / wall, 2) if wall > 0 else None,
        "latency": summary_ms([r["seconds"] for r in ok]) if ok else None,
        "client_connect": summary_ms([r["connect_s"] for r in ok]) if ok else None,
    }


def run(data: Path, work: Path, *, users: int = 16, per_user: int = 4) -> dict[str, Any]:
    """Cold start, concurrency and peak memory of ``python app.py`` over the index in ``data``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = child_env(
        RAG_DATA_DIR=str(data), RAG_CORPUS_DIR=str(CORPUS), RAG_HOST="127.0.0.1", RAG_PORT=str(port)
    )
    result: dict[str, Any] = {"date": now_iso(), "loadavg_before": loadavg()}
    log_path = work / "app.log"
    with log_path.open("w") as app_log:
        log(f"app: cold start of python app.py on {url}")
        started = time.perf_counter()
        proc = subprocess.Popen(
            [PYTHON, "app.py"], cwd=REPO, env=env, stdout=app_log, stderr=subprocess.STDOUT
        )
        try:
            wait_http(url, 180, proc)
            result["ready_s"] = round(time.perf_counter() - started, 2)
            result["memory_ready"] = proc_memory_mb(proc.pid)
            log(f"  ready in {result['ready_s']} s")
            log(f"app: {users} concurrent gradio_client users x {per_user} questions on /ask")
            result["concurrency"] = load_test(url, users, per_user)
            result["memory_end"] = proc_memory_mb(proc.pid)
            result["peak_rss_mb"] = result["memory_end"]["vmhwm_mb"]
            c = result["concurrency"]
            log(f"  {c['completed']}/{c['requests']} ok, {c['throughput_rps']} req/s, latency {c['latency']}")
        finally:
            stop(proc)
    result["settings"] = {"concurrency": 4, "rate_limit_per_minute": 30, "cpus": os.cpu_count()}
    result["loadavg_after"] = loadavg()
    return result
