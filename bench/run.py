"""Run the benchmarks and write ``bench/RESULTS.md``, ``bench/results.json`` and the scale plot.

    .venv/bin/python bench/run.py                  # everything (make bench), about 5-10 min on 2 cores
    .venv/bin/python bench/run.py --quick          # small sizes, to check the scripts
    .venv/bin/python bench/run.py --only scale     # one section; the others keep their last figures

Sections: ``ingest`` (ours vs the LangChain tutorial pipeline, re-ingest, bf16 vs fp32 quality),
``latency`` (retrieval and extractive answers in-process), ``app`` (cold start, 16 concurrent
users, peak RSS of ``python app.py``), ``scale`` (10k-100k chunks in a Chroma server).
Run it on a quiet machine: every section records the load average it ran under.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import app_bench, ingest_bench, report
from bench.common import (
    REPO,
    WORK,
    git_commit,
    loadavg,
    log,
    machine,
    now_iso,
    offline,
    run_worker,
    versions,
)

SECTIONS = ("ingest", "latency", "app", "scale")
FULL_SIZES = "10000,30000,100000"
QUICK_SIZES = "1000,3000,10000"
BUDGET_S = 600


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (checks the scripts, not the targets)"
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for RESULTS.md, results.json and the plot"
        " (default: bench/, or bench/.data/quick with --quick so the committed figures stay)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder under bench/.data")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    offline()
    if args.out is None:
        args.out = WORK / "quick" if args.quick else REPO / "bench"
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    work = WORK / time.strftime("run-%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "results.json"
    previous: dict[str, Any] = json.loads(json_path.read_text()) if json_path.exists() else {}
    results: dict[str, Any] = {k: previous[k] for k in SECTIONS if k in previous and k not in only}
    meta: dict[str, Any] = {
        "date": now_iso(),
        "commit": git_commit(),
        "machine": machine(),
        "versions": versions(),
        "loadavg_start": loadavg(),
        "quick": args.quick,
        "sections_run": only,
    }
    log(f"bench: sections {only}, load average {meta['loadavg_start']}, scratch {work}")
    try:
        ours_dir = work / "ours"
        if "ingest" in only:
            results["ingest"] = ingest_bench.run(work, quality=True)
        elif {"latency", "app", "scale"} & set(only):
            log("bench: building the index the other sections use")
            run_worker("ingest_bench", "--worker", "convert")
            run_worker("ingest_bench", "--worker", "ours", "--data", str(ours_dir))
        if "latency" in only:
            log("latency: retrieval and extractive answers over the golden questions")
            passes = "1" if args.quick else "3"
            results["latency"] = run_worker("latency_bench", "--data", str(ours_dir), "--passes", passes)
            lat = results["latency"]
            log(
                f"  retrieval p50 {lat['retrieval']['p50_ms']} ms,"
                f" answer p50 {lat['answer_extractive']['p50_ms']} ms"
            )
        if "app" in only:
            results["app"] = app_bench.run(ours_dir, work, users=16, per_user=2 if args.quick else 5)
        if "scale" in only:
            sizes = QUICK_SIZES if args.quick else FULL_SIZES
            results["scale"] = run_worker(
                "scale_bench",
                "--data",
                str(ours_dir),
                "--work",
                str(work / "scale"),
                "--sizes",
                sizes,
                "--passes",
                "1" if args.quick else "2",
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    meta["loadavg_end"] = loadavg()
    meta["duration_s"] = round(time.perf_counter() - started, 1)
    results = {"meta": meta, **results}
    targets = report.check_targets(results)
    results["targets"] = targets
    plot_path = args.out / report.PLOT_NAME
    has_plot = report.plot(results, plot_path) or plot_path.exists()
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(
        report.render(results, targets, report.PLOT_NAME if has_plot else None)
    )
    print(
        f"\nBenchmarks ({meta['duration_s']} s,"
        f" load average {meta['loadavg_start']} -> {meta['loadavg_end']}):"
    )
    for row in targets:
        met = {True: "met", False: "NOT MET", None: "not measured"}[row["met"]]
        print(f"  {row['target']}: {row['value']} (goal {row['limit']}): {met}")
    print(f"Written: {args.out / 'RESULTS.md'}, {json_path}" + (f", {plot_path}" if has_plot else ""))
    if meta["duration_s"] > BUDGET_S and not args.quick:
        log(f"warning: the benchmarks took {meta['duration_s']} s, over the {BUDGET_S} s budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
