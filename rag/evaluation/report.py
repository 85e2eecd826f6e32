"""Eval reports: results.jsonl, report.json, report.md, PNG plots, comparison and the CI gate.

A report folder holds::

    results.jsonl   one row per question and answerer: the answer JSON plus its metric values
    report.json     aggregates per answerer (overall and per type), settings, models, machine, date
    report.md       summary tables and the 10 worst questions with their answers and citations
    plots/*.png     metric bars per question type, retrieval hit rate by k, latency distribution
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

from rag.answering import embedding_name
from rag.config import Settings
from rag.evaluation.metrics import KS, LOWER_IS_BETTER

# The order metrics are shown in; anything else measured follows.
SHOWN = (
    [f"retrieval.source@{k}" for k in KS]
    + [f"retrieval.evidence@{k}" for k in KS]
    + [f"retrieval.rr@{k}" for k in KS]
    + [
        "correctness.facts",
        "correctness.correct",
        "citations.valid",
        "citations.sentence_share",
        "faithfulness",
        "faithfulness.undecided",
        "refusal.unanswerable_refused",
        "refusal.answerable_refused",
        "latency.total_ms.p50",
        "latency.total_ms.p95",
        "latency.first_token_ms.p50",
        "latency.first_token_ms.p95",
        "latency.retrieve_ms.p50",
        "latency.retrieve_ms.p95",
        "errors",
        "questions",
    ]
)
BAR_METRICS = (
    "retrieval.source@5",
    "retrieval.evidence@5",
    "correctness.correct",
    "citations.sentence_share",
    "faithfulness",
    "refusal.unanswerable_refused",
)


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
    }


def build_report(
    settings: Settings, runs: Mapping[str, Any], *, questions: Path, n_questions: int
) -> dict[str, Any]:
    try:
        digest = sha256(questions.read_bytes()).hexdigest()[:16]
    except OSError:
        digest = ""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "questions": {"file": str(questions), "sha256": digest, "count": n_questions},
        "machine": machine(),
        "models": {
            "embedding": embedding_name(settings),
            "answerers": {name: run.get("model", "") for name, run in runs.items()},
        },
        "settings": settings.public_dict(),
        "answerers": dict(runs),
    }


def load_report(folder: Path) -> dict[str, Any]:
    path = folder / "report.json" if folder.is_dir() else folder
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the report {path}: {exc}") from None
    if not isinstance(data, dict) or "answerers" not in data:
        raise ValueError(f"{path} is not an eval report")
    return data


# --- writing ---------------------------------------------------------------------------------


def write_all(out: Path, rows: Sequence[Mapping[str, Any]], report: Mapping[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    (out / "report.json").write_text(text, encoding="utf-8")
    (out / "report.md").write_text(markdown(report, rows), encoding="utf-8")
    write_plots(out / "plots", report, rows)


def fmt(name: str, value: Any) -> str:
    if value is None:
        return "–"
    if name.startswith("latency."):
        return f"{value:,.0f} ms"
    if name in ("errors", "questions"):
        return f"{value:.0f}"
    return f"{value:.3f}"


def table(run: Mapping[str, Any]) -> str:
    overall: dict[str, Any] = run["overall"]
    by_type: dict[str, dict[str, Any]] = run["by_type"]
    names = [n for n in SHOWN if n in overall] + sorted(n for n in overall if n not in SHOWN)
    head = "| metric | overall | " + " | ".join(by_type) + " |"
    rule = "|---|---:|" + "---:|" * len(by_type)
    lines = [head, rule]
    for name in names:
        cells = [fmt(name, overall.get(name))] + [fmt(name, by_type[t].get(name)) for t in by_type]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quality(row: Mapping[str, Any]) -> float:
    """How well one question went, 0..1, to pick the worst ones for the report."""
    m = row["metrics"]
    if row.get("answer") is None:  # retrieval only
        return float(m.get("retrieval.rr@10") or 0.0) + float(m.get("retrieval.evidence@10") or 0.0)
    if m.get("refusal.unanswerable_refused") is not None:
        return float(m["refusal.unanswerable_refused"])
    parts = [m.get("correctness.facts"), m.get("faithfulness"), m.get("retrieval.evidence@5")]
    return sum(float(p or 0.0) for p in parts) / len(parts)


def worst(rows: Sequence[Mapping[str, Any]], n: int = 10) -> list[Mapping[str, Any]]:
    return sorted(rows, key=lambda r: (quality(r), str(r["id"])))[:n]


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown(report: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    s = report["settings"]
    lines = [
        "# Eval report",
        "",
        f"- date: {report['date']}; machine: {report['machine']['cpu']} ({report['machine']['cpus']} CPUs)",
        f"- questions: `{report['questions']['file']}` ({report['questions']['count']},"
        f" sha256 {report['questions']['sha256']})",
        f"- embedding model: {report['models']['embedding']}; top_k {s['top_k']}, fetch_k {s['fetch_k']},"
        f" hybrid {s['hybrid']}, mmr {s['mmr']}, chunk {s['chunk_size']}/{s['chunk_overlap']},"
        f" min_relevance {s['min_relevance']}",
        "",
        "Metrics are means over the questions they apply to (retrieval and correctness: answerable"
        " questions; citations and faithfulness: answers that were not refusals). `@k` = within the"
        " top k passages; `rr` = reciprocal rank of the first passage holding the evidence.",
    ]
    for name, run in report["answerers"].items():
        judge = run.get("judge") or {}
        lines += [
            "",
            f"## {name}",
            "",
            f"- model: {run.get('model') or '–'}",
            f"- faithfulness judge: {', '.join(judge.get('used') or []) or '–'}"
            + (f" (generated sentences: {judge['generated']})" if judge.get("generated") else ""),
            f"- run time: {run.get('seconds', 0):.0f} s",
            "",
            table(run),
            "",
            *outcomes(answered := [r for r in rows if r["answerer"] == name]),
            "",
            f"### The 10 worst questions ({name})",
        ]
        for row in worst(answered):
            lines += _worst_entry(row)
    return "\n".join(lines) + "\n"


def outcome(row: Mapping[str, Any]) -> str:
    """What a user got: "correct", "wrong" (an answer without every key fact, or any answer to
    an unanswerable question), "refused", or "error"."""
    answer = row.get("answer")
    if row.get("error") or answer is None:
        return "error"
    if answer.get("refused"):
        return "refused"
    if row["type"] == "unanswerable":
        return "wrong"
    return "correct" if row["metrics"].get("correctness.correct") == 1.0 else "wrong"


def outcomes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per question type, how many were answered correctly, answered wrongly and refused; then
    every unanswerable question that got an answer, with that answer."""
    kinds = ("correct", "wrong", "refused", "error")
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["type"], dict.fromkeys(kinds, 0))[outcome(row)] += 1
    lines = [
        "### Outcomes by question type",
        "",
        "An unanswerable question is answered correctly only by a refusal.",
        "",
        "| type | questions | answered correctly | answered wrongly | refused | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, c in sorted(counts.items()):
        right = c["refused"] if kind == "unanswerable" else c["correct"]
        refused = "–" if kind == "unanswerable" else str(c["refused"])
        lines.append(f"| {kind} | {sum(c.values())} | {right} | {c['wrong']} | {refused} | {c['error']} |")
    answered = [r for r in rows if r["type"] == "unanswerable" and outcome(r) == "wrong"]
    lines += ["", f"### Unanswerable questions that were answered ({len(answered)})"]
    for row in answered:
        lines += ["", f"- **{row['id']}**: {_one_line(row['question'], 300)}"]
        lines.append(f"  - got: {_one_line((row.get('answer') or {}).get('answer', ''))}")
    return lines


def _worst_entry(row: Mapping[str, Any]) -> list[str]:
    m = row["metrics"]
    facts = m.get("correctness.facts")
    bits = [f"type {row['type']}"]
    if facts is not None:
        bits.append(f"key facts {facts:.2f}")
    if m.get("faithfulness") is not None:
        bits.append(f"faithfulness {m['faithfulness']:.2f}")
    if m.get("retrieval.evidence@5") is not None:
        bits.append(f"evidence@5 {m['retrieval.evidence@5']:.0f}, source@10 {m['retrieval.source@10']:.0f}")
    out = ["", f"**{row['id']}**: {_one_line(row['question'], 300)} ({'; '.join(bits)})", ""]
    if row.get("history"):
        out.append(f"- after: {_one_line(' / '.join(t['content'] for t in row['history']), 300)}")
    out.append(f"- expected: {_one_line(row.get('reference') or '–')}")
    answer = row.get("answer")
    if row.get("error"):
        out.append(f"- error: {_one_line(row['error'])}")
    if answer is not None:
        refused = " (refused)" if answer.get("refused") else ""
        out.append(f"- got{refused}: {_one_line(answer.get('answer', ''))}")
        for c in answer.get("citations") or []:
            where = f"{c['source']} > {c['section']}" if c.get("section") else c["source"]
            out.append(f"  - [{c['n']}] {where}: “{_one_line(c.get('quote', ''), 200)}”")
    top = ", ".join(r["source"] for r in (row.get("ranking") or [])[:3])
    out.append(f"- top passages from: {top or '–'}")
    return out


def summary_text(report: Mapping[str, Any]) -> str:
    keys = (
        "retrieval.source@5", "retrieval.evidence@5", "retrieval.evidence@10", "retrieval.rr@10",
        "correctness.correct", "faithfulness", "refusal.unanswerable_refused",
        "refusal.answerable_refused", "latency.total_ms.p50", "latency.total_ms.p95",
    )
    lines = []
    for name, run in report["answerers"].items():
        o = run["overall"]
        lines.append(f"{name}: " + ", ".join(f"{k} {fmt(k, o[k])}" for k in keys if k in o))
    return "\n".join(lines)


# --- plots -----------------------------------------------------------------------------------


def write_plots(folder: Path, report: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, run in report["answerers"].items():
        by_type: dict[str, dict[str, Any]] = run["by_type"]
        groups = {"overall": run["overall"], **by_type}
        metrics = [m for m in BAR_METRICS if any(g.get(m) is not None for g in groups.values())]
        if metrics:
            fig, ax = plt.subplots(figsize=(10, 4.5))
            width = 0.8 / len(metrics)
            x = np.arange(len(groups))
            for i, metric in enumerate(metrics):
                values = [g.get(metric) or 0.0 for g in groups.values()]
                ax.bar(x + i * width - 0.4 + width / 2, values, width, label=metric)
            ax.set_xticks(x, list(groups))
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{name}: metrics by question type")
            ax.legend(fontsize=7, loc="lower right")
            written.append(_save(fig, folder / f"{name}-metrics-by-type.png"))
        fig, ax = plt.subplots(figsize=(6, 4))
        for group, values in groups.items():
            if group != "unanswerable" and values.get(f"retrieval.evidence@{KS[-1]}") is not None:
                ax.plot(KS, [values.get(f"retrieval.evidence@{k}") for k in KS], marker="o", label=group)
        ax.set_xticks(KS)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("k")
        ax.set_ylabel("evidence passage in top k")
        ax.set_title(f"{name}: retrieval hit rate by k")
        ax.legend(fontsize=7)
        written.append(_save(fig, folder / f"{name}-retrieval-at-k.png"))
        mine = [r["metrics"] for r in rows if r["answerer"] == name]
        series = {
            label: [m[key] / 1000 for m in mine if m.get(key) is not None]
            for label, key in (("total", "latency.total_ms"), ("first token", "latency.first_token_ms"),
                               ("retrieval", "latency.retrieve_ms"))
        }
        series = {k: v for k, v in series.items() if v}
        if series:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.hist(list(series.values()), bins=20, label=list(series), alpha=0.8)
            ax.set_xlabel("seconds")
            ax.set_ylabel("questions")
            ax.set_title(f"{name}: latency")
            ax.legend()
            written.append(_save(fig, folder / f"{name}-latency.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# --- comparison ------------------------------------------------------------------------------


def lower_is_better(name: str) -> bool:
    return name.startswith(LOWER_IS_BETTER)


def compare_markdown(base: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Per answerer both reports ran: each overall metric, before, after and the change
    (▲ better, ▼ worse), plus the settings that differ."""
    lines = [f"# Compared with the report of {base.get('date', '?')}", ""]
    changed = {
        k: (base.get("settings", {}).get(k), v)
        for k, v in new.get("settings", {}).items()
        if base.get("settings", {}).get(k) != v
    }
    if changed:
        lines.append("Settings changed: " + ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in changed.items()))
        lines.append("")
    shared = [n for n in new["answerers"] if n in base["answerers"]]
    for name in new["answerers"]:
        if name not in shared:
            lines.append(f"({name}: not in the earlier report)")
    for name in shared:
        before, after = base["answerers"][name]["overall"], new["answerers"][name]["overall"]
        lines += ["", f"## {name}", "", "| metric | before | after | change |", "|---|---:|---:|---:|"]
        names = [n for n in SHOWN if n in after or n in before]
        for metric in names:
            a, b = before.get(metric), after.get(metric)
            if a is None and b is None:
                continue
            delta = "" if a is None or b is None else _delta(metric, a, b)
            lines.append(f"| {metric} | {fmt(metric, a)} | {fmt(metric, b)} | {delta} |")
    return "\n".join(lines) + "\n"


def _delta(metric: str, before: float, after: float) -> str:
    diff = after - before
    if abs(diff) < 1e-9:
        return "="
    better = (diff < 0) if lower_is_better(metric) else (diff > 0)
    shown = f"{diff:+,.0f} ms" if metric.startswith("latency.") else f"{diff:+.3f}"
    return f"{shown} {'▲' if better else '▼'}"


# --- gate ------------------------------------------------------------------------------------


def load_thresholds(path: Path) -> dict[str, Any]:
    """``{answerer: {"min": {metric: value}, "max": {metric: value}}}``; keys starting with ``_``
    are comments."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the thresholds {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of answerers")
    for name, limits in data.items():
        if name.startswith("_"):
            continue
        if not isinstance(limits, dict) or set(limits) - {"min", "max"}:
            raise ValueError(f"{path}: {name} must hold 'min' and/or 'max' objects")
        for bound in limits.values():
            if not isinstance(bound, dict) or not all(isinstance(v, int | float) for v in bound.values()):
                raise ValueError(f"{path}: {name}: thresholds must be numbers")
    return {k: v for k, v in data.items() if not k.startswith("_")}


def check_gate(
    report: Mapping[str, Any], thresholds: Mapping[str, Any], *, retrieval_only: bool = False
) -> tuple[list[str], int]:
    """The failing metrics (as readable lines) and how many thresholds were checked.

    A metric the report lacks fails (a gate must not pass by measuring nothing), except that a
    retrieval-only run checks only the ``retrieval.*`` thresholds, against its single run.
    """
    failures: list[str] = []
    checked = 0
    for name, limits in thresholds.items():
        run_name = "retrieval-only" if retrieval_only else name
        run = report["answerers"].get(run_name)
        if run is None:
            failures.append(f"{name}: not evaluated (thresholds exist for it)")
            continue
        overall = run["overall"]
        for kind, bound in (("min", limits.get("min", {})), ("max", limits.get("max", {}))):
            for metric, limit in bound.items():
                if retrieval_only and not metric.startswith("retrieval."):
                    continue
                checked += 1
                value = overall.get(metric)
                if value is None:
                    failures.append(f"{run_name}: {metric} was not measured (needs {kind} {limit})")
                elif kind == "min" and value < limit:
                    failures.append(f"{run_name}: {metric} = {value:.3f}, below the minimum {limit}")
                elif kind == "max" and value > limit:
                    failures.append(f"{run_name}: {metric} = {value:.3f}, above the maximum {limit}")
        if retrieval_only:
            break
    return failures, checked
