"""Turn ``bench/results.json`` into the targets table, ``bench/RESULTS.md`` and the scale plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLOT_NAME = "scale_latency.png"


@dataclass(frozen=True)
class Target:
    name: str
    section: str
    path: tuple[str | int, ...]
    limit: float
    kind: str  # "max": value <= limit; "min": value >= limit
    unit: str


TARGETS = (
    Target(
        "Ingest throughput vs the LangChain peer (chunks/s ratio)",
        "ingest",
        ("speedup_chunks_per_s",),
        5.0,
        "min",
        "x",
    ),
    Target(
        "Re-ingest, nothing changed: `rag ingest` wall time",
        "ingest",
        ("reingest_cli", "seconds"),
        2.0,
        "max",
        "s",
    ),
    Target(
        "Re-ingest, nothing changed: in-process `ingest()`",
        "ingest",
        ("ours", "reingest_in_process_s"),
        2.0,
        "max",
        "s",
    ),
    Target(
        "Default (OpenVINO bf16) vs PyTorch fp32 vectors: mean cosine",
        "ingest",
        ("agreement_default_fp32", "mean_cosine"),
        0.999,
        "min",
        "",
    ),
    Target(
        "Retrieval eval, worst metric change vs fp32 index", "ingest", ("eval_worst_delta",), -0.02, "min", ""
    ),
    Target("Retrieval p50 (default corpus)", "latency", ("retrieval", "p50_ms"), 15.0, "max", "ms"),
    Target("Retrieval p95 (default corpus)", "latency", ("retrieval", "p95_ms"), 30.0, "max", "ms"),
    Target(
        "Extractive answer end to end p50", "latency", ("answer_extractive", "p50_ms"), 300.0, "max", "ms"
    ),
    Target("App ready from a cold start (index built)", "app", ("ready_s",), 8.0, "max", "s"),
    Target("App peak RSS without an LLM", "app", ("peak_rss_mb",), 1200.0, "max", "MiB"),
    Target("16 concurrent users: failed requests", "app", ("concurrency", "failed"), 0.0, "max", ""),
    Target(
        "Whole retriever (Chroma server + BM25) p50 at 100k chunks",
        "scale",
        ("hybrid_at_100k", "retrieval", "p50_ms"),
        40.0,
        "max",
        "ms",
    ),
    Target(
        "Chroma server query p50 at 100k chunks", "scale", ("at_100k", "query", "p50_ms"), 40.0, "max", "ms"
    ),
)


def dig(data: Any, path: tuple[str | int, ...]) -> Any:
    """``data[path[0]][path[1]]...`` or None when any step is missing.

    >>> dig({"a": {"b": [1, 2]}}, ("a", "b", 1))
    2
    >>> dig({"a": {}}, ("a", "b")) is None
    True
    """
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def derive(results: dict[str, Any]) -> None:
    """Figures computed from others, so the targets can point at them."""
    ingest = results.get("ingest") or {}
    if ingest.get("eval_delta"):
        ingest["eval_worst_delta"] = min(ingest["eval_delta"].values())
    scale = results.get("scale") or {}
    for point in scale.get("points", []):
        if point["chunks"] == 100_000:
            scale["at_100k"] = point
    hybrid = scale.get("hybrid_at_largest")
    if hybrid and hybrid["chunks"] == 100_000:
        scale["hybrid_at_100k"] = hybrid


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    derive(results)
    rows = []
    for t in TARGETS:
        value = dig(results.get(t.section), t.path)
        met = None if value is None else (value <= t.limit if t.kind == "max" else value >= t.limit)
        rows.append(
            {
                "target": t.name,
                "limit": f"{'≤' if t.kind == 'max' else '≥'} {t.limit:g} {t.unit}".strip(),
                "value": value,
                "unit": t.unit,
                "met": met,
            }
        )
    return rows


def _fmt(value: Any, unit: str = "") -> str:
    """A figure with its unit, to five significant digits.

    >>> _fmt(0.99995), _fmt(1056.75, "ms"), _fmt(None)
    ('0.99995', '1056.8 ms', 'not measured')
    """
    if value is None:
        return "not measured"
    text = f"{value:.5g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}".strip()


def plot(results: dict[str, Any], path: Path) -> bool:
    """Latency and server memory against collection size (matplotlib, Agg backend)."""
    points = (results.get("scale") or {}).get("points") or []
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [p["chunks"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(sizes, [p["query"]["p50_ms"] for p in points], "o-", label="Chroma query p50")
    left.plot(sizes, [p["query"]["p95_ms"] for p in points], "o--", label="Chroma query p95")
    left.plot(
        sizes, [p["embed_and_query"]["p50_ms"] for p in points], "s-", label="embed question + query p50"
    )
    left.plot(
        sizes, [p["embed_and_query"]["p95_ms"] for p in points], "s--", label="embed question + query p95"
    )
    left.axhline(40, color="grey", lw=0.8, ls=":", label="target p50 (40 ms)")
    left.set_xscale("log")
    left.set_xlabel("chunks in the collection")
    left.set_ylabel("ms per question")
    left.set_ylim(bottom=0)
    left.set_title("Retrieval latency, Chroma server over HTTP")
    left.legend(fontsize=8)
    right.plot(sizes, [p["server_memory"]["vmrss_mb"] for p in points], "o-", label="server RSS (MiB)")
    right.plot(sizes, [p["disk_mb"] for p in points], "s-", label="server folder (MiB)")
    right.set_xscale("log")
    right.set_xlabel("chunks in the collection")
    right.set_title("Chroma server memory and disk")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    meta = results.get("meta", {})
    fig.suptitle(
        f"{meta.get('machine', {}).get('cpu', '')}, {meta.get('machine', {}).get('cpus', '?')} cores,"
        f" load avg {(results.get('scale') or {}).get('loadavg_before', ['?'])[0]}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def render(results: dict[str, Any], targets: list[dict[str, Any]], plot_name: str | None) -> str:
    meta = results.get("meta", {})
    m = meta.get("machine", {})
    v = meta.get("versions", {})
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/run.py`); machine-readable copy in `bench/results.json`.",
        "Measured, never extrapolated. The machine is shared: each section records the load average",
        "(1, 5, 15 min) before and after it ran; figures taken under load are pessimistic.",
        "",
        f"- Date: {meta.get('date')} (commit {meta.get('commit')}), run took {meta.get('duration_s')} s"
        + (" (quick mode: small sizes)" if meta.get("quick") else ""),
        f"- Machine: {m.get('cpu')}, {m.get('cpus')} CPUs ({', '.join(m.get('cpu_flags', []))}),"
        f" {m.get('memory_gb')} GB RAM, {m.get('platform')}",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Load average at start: {meta.get('loadavg_start')}, at end: {meta.get('loadavg_end')}",
        "",
        "## Targets",
        "",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ]
    for row in targets:
        met = {True: "yes", False: "**no**", None: "–"}[row["met"]]
        lines.append(f"| {row['target']} | {row['limit']} | {_fmt(row['value'], row['unit'])} | {met} |")

    ingest = results.get("ingest")
    if ingest:
        peer, ours = ingest["peer"], ingest["ours"]
        lines += [
            "",
            "## 1. Ingest: `rag.index.ingest` vs the LangChain tutorial pipeline",
            "",
            f"Same corpus (`corpus/`, {peer['files']} files, {ingest['corpus_chars']:,} characters), same"
            " run, each pipeline in a fresh process; time from after the imports to the stored index"
            " (model load, read, split, embed, store).",
            f" Load average before/after: {ingest['loadavg_before']} / {ingest['loadavg_after']}.",
            "",
            "| pipeline | chunks | seconds | CPU seconds | chunks/s | corpus kchars/s |",
            "|---|---|---|---|---|---|",
            "| LangChain tutorial (TextLoader, splitter 1000/200, HuggingFaceEmbeddings fp32,"
            f" Chroma.from_documents) | {peer['chunks']} | {peer['seconds']} | {peer.get('cpu_s')} |"
            f" {peer['chunks_per_s']} | {peer['kchars_per_s']} |",
            f"| rag.index.ingest, defaults ({_backend(ours)} {ours['precision']}, batch {ours['batch_size']},"
            f" chunks {ours['chunk_size']}/{ours['chunk_overlap']} + title line) | {ours['chunks']} |"
            f" {ours['seconds']} | {ours.get('cpu_s')} | {ours['chunks_per_s']} | {ours['kchars_per_s']} |",
        ]
        for key, label in (("ours_torch", "same settings otherwise"), ("ours_fp32", "the reference vectors")):
            row = ingest.get(key)
            if row:
                lines.append(
                    f"| rag.index.ingest, {_backend(row)} {row['precision']} ({label}) | {row['chunks']} |"
                    f" {row['seconds']} | {row.get('cpu_s')} | {row['chunks_per_s']} |"
                    f" {row['kchars_per_s']} |"
                )
        conversion = ingest.get("openvino_conversion")
        if conversion:
            lines += [
                "",
                f"Before the timed runs, the embedding model was converted to OpenVINO once, into the"
                f" models folder every run shares: {conversion['seconds']} s (a first `rag ingest` on a"
                " machine pays it once; later ones, and the web app, read the converted file).",
            ]
        lines += [
            "",
            f"Python imports before the timed span: peer {peer['imports_s']} s, ours {ours['imports_s']} s."
            " CPU seconds are user + system time of all the process's threads.",
        ]
        lines += [
            "",
            f"Speed-up: **{ingest['speedup_chunks_per_s']}x** in chunks/s,"
            f" {ingest['speedup_chars_per_s']}x in"
            " corpus characters/s (wall time ratio; our chunks are smaller, so this is the stricter figure).",
            "",
            f"Re-ingest with nothing changed: `rag ingest` as a command {ingest['reingest_cli']['seconds']} s"
            f" wall (Python start-up and imports included); `ingest()` in-process"
            f" {ours['reingest_in_process_s']} s ({ours['reingest_added']} chunks re-embedded).",
        ]
        if ingest.get("agreement_default_fp32"):
            a = ingest["agreement_default_fp32"]
            lines += [
                "",
                f"Default vs PyTorch fp32 vectors of the same {a['chunks']} chunks: mean cosine"
                f" {a['mean_cosine']}, min {a['min_cosine']}.",
            ]
        if ingest.get("eval_default"):
            lines += [
                "",
                "Retrieval eval (`rag eval --retrieval-only`, golden set) on each index:",
                "",
                "| metric | default index | PyTorch fp32 index | change |",
                "|---|---|---|---|",
            ]
            for key, value in ingest["eval_default"].items():
                lines.append(
                    f"| {key} | {value} | {ingest['eval_fp32'].get(key)} | {ingest['eval_delta'][key]:+} |"
                )

    lat = results.get("latency")
    if lat:
        lines += [
            "",
            "## 2. Latency on the default corpus (in-process)",
            "",
            f"{lat['questions']} golden questions over an index of {lat['chunks']} chunks, warm (one pass"
            f" left out). Load average before/after: {lat['loadavg_before']} / {lat['loadavg_after']}.",
            "",
            "| step | n | p50 ms | p95 ms | mean ms | max ms |",
            "|---|---|---|---|---|---|",
        ]
        for label, key in (
            ("question embedding", "embed_query"),
            ("retrieval (`HybridRetriever.invoke`)", "retrieval"),
            ("extractive answer (`Assistant.ask`)", "answer_extractive"),
        ):
            s = lat[key]
            lines.append(
                f"| {label} | {s['n']} | {s['p50_ms']} | {s['p95_ms']} | {s['mean_ms']} | {s['max_ms']} |"
            )
        stages = ", ".join(f"{k} {val} ms" for k, val in lat.get("answer_stages_p50_ms", {}).items())
        lines += [
            "",
            f"Answer stages (p50 of the chain's own timings): {stages}.",
            f" `build_assistant` took {lat['build_assistant_s']} s; this process peaked at"
            f" {lat['peak_rss_mb']} MiB.",
        ]

    app = results.get("app")
    if app:
        c = app["concurrency"]
        lat_c = c.get("latency") or {}
        lines += [
            "",
            "## 2b. The web app: cold start, memory, 16 concurrent users",
            "",
            f"`python app.py` on a free loopback port over the built index, default settings (Gradio"
            f" queue concurrency {app['settings']['concurrency']}, rate limit"
            f" {app['settings']['rate_limit_per_minute']}/min per user). Load average before/after:"
            f" {app['loadavg_before']} / {app['loadavg_after']}.",
            "",
            f"- Ready (first HTTP 200) {app['ready_s']} s after the process started; RSS then"
            f" {app['memory_ready']['vmrss_mb']} MiB.",
            f"- {c['users']} `gradio_client` users, each its own client and `X-Forwarded-For` address, asked"
            f" {c['requests']} golden questions on `/ask`, all released at once: {c['completed']} answered,"
            f" {c['failed']} failed, in {c['wall_s']} s: **{c['throughput_rps']} requests/s**, latency p50"
            f" {lat_c.get('p50_ms')} ms, p95 {lat_c.get('p95_ms')} ms, max {lat_c.get('max_ms')} ms"
            " (queueing included).",
            f"- Peak RSS of the app process (VmHWM) at the end: {app['peak_rss_mb']} MiB (no LLM).",
        ]
        if c.get("errors"):
            lines.append(f"- Errors seen: {'; '.join(c['errors'])}")

    scale = results.get("scale")
    if scale:
        lines += [
            "",
            "## 3. Scale: a synthetic collection in a Chroma server",
            "",
            f"`chroma run` (client-server, loopback HTTP), one collection grown to each size in turn."
            f" Vectors: the {scale['base_chunks']} real MiniLM vectors of the corpus's chunks, copied with"
            f" Gaussian noise of norm {scale['noise']} and renormalised (seed {scale['seed']}); texts: seeded"
            " draws from the corpus vocabulary, as long as the source chunk. No text was embedded to build"
            " the collection. Queries: the golden questions' real embeddings, 20 nearest with documents,"
            " metadata and vectors (what `HybridRetriever` asks for); 'embed + query' adds embedding the"
            f" question with the real model. Load average before/after: {scale['loadavg_before']} /"
            f" {scale['loadavg_after']}.",
            "",
            "| chunks | add rate (chunks/s) | first query ms | query p50 ms | query p95 ms |"
            " embed + query p50 / p95 ms | self-query recall@1 | server RSS MiB (peak) | server folder MiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for p in scale["points"]:
            lines.append(
                f"| {p['chunks']:,} | {p['add_rate_per_s']} | {p['first_query_ms']} |"
                f" {p['query']['p50_ms']} | {p['query']['p95_ms']} |"
                f" {p['embed_and_query']['p50_ms']} / {p['embed_and_query']['p95_ms']} |"
                f" {p['self_recall_at_1']} | {p['server_memory']['vmrss_mb']}"
                f" ({p['server_memory']['vmhwm_mb']}) |"
                f" {p['disk_mb']} |"
            )
        pts = scale["points"]
        if len(pts) >= 2:
            a, b = pts[0], pts[-1]
            growth = b["chunks"] / a["chunks"]
            empty_mb = scale["server_memory_empty"]["vmrss_mb"]
            per_chunk_kib = (b["server_memory"]["vmrss_mb"] - empty_mb) / b["chunks"] * 1024
            lines += [
                "",
                f"From {a['chunks']:,} to {b['chunks']:,} chunks ({growth:g}x): query p50"
                f" {a['query']['p50_ms']} -> {b['query']['p50_ms']} ms"
                f" ({b['query']['p50_ms'] / a['query']['p50_ms']:.2f}x), server RSS"
                f" {a['server_memory']['vmrss_mb']} -> {b['server_memory']['vmrss_mb']} MiB"
                f" ({per_chunk_kib:.1f} KiB per chunk above the empty server's"
                f" {scale['server_memory_empty']['vmrss_mb']} MiB), add rate {a['add_rate_per_s']} ->"
                f" {b['add_rate_per_s']} chunks/s.",
            ]
        hyb = scale.get("hybrid_at_largest")
        if hyb:
            r = hyb["retrieval"]
            lines += [
                "",
                f"The whole retriever at {hyb['chunks']:,} chunks (`HybridRetriever`: question embedding, the"
                " server's dense query, BM25 over the same chunks in the client process, fusion, fetching"
                f" BM25-only hits from the server): p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, max"
                f" {r['max_ms']} ms over {r['n']} questions. Building that BM25 index took"
                f" {hyb['bm25_build_s']} s and grew the client process by {hyb['bm25_rss_growth_mb']} MiB.",
            ]
        if plot_name:
            lines += ["", f"![Latency and memory against collection size]({plot_name})"]
    lines.append("")
    return "\n".join(lines)


def _backend(run: dict[str, Any]) -> str:
    return "OpenVINO" if "OpenVINO" in str(run.get("backend", "")) else "PyTorch"
