"""The eval harness: run a golden question file through the answering API and score every answer.

``rag eval`` is the command line; in code::

    pipeline = build_pipeline(settings, "extractive", embeddings)
    rows = evaluate(load_questions(Path("evals/golden.jsonl")), pipeline)
    aggregate(rows)["overall"]["correctness.correct"]

Each question is answered with ``Assistant.ask(..., k=10)`` (the JSON ``rag ask --json`` prints):
the chain ranks ``max(KS)`` (10) passages deep, as recall@10 needs, and answers from the first
``top_k`` of that same ranking, which ``Answer.retrieved`` returns whole. Retrieval-only runs
take the ranking from ``Assistant.retrieve``, the chain's own condense and retrieve steps.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.answering import (
    Assistant,
    IndexProblem,
    Passage,
    build_embeddings,
    build_openai_model,
    chat_model_judge,
    embedding_name,
    llamacpp_judge,
    model_path,
    open_assistant,
    refresh_index,
    verify_by_match,
)
from rag.config import Settings
from rag.evaluation.metrics import KS, ExactJudge, Judge, VerifierJudge, aggregate, score
from rag.evaluation.ragas_export import write_ragas

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

TYPES = ("article", "corpus", "multi", "unanswerable", "followup")
FIELDS = ("id", "type", "question", "history", "answer", "key_facts", "sources", "evidence")
RETRIEVAL_ONLY = "retrieval-only"
ARTICLE = "the-diplomat-2016-why-should-the-us-talk-to-north-korea.md"


class GoldenError(ValueError):
    """The question file cannot be read; the message names the line."""


def load_questions(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Read a golden JSONL file (the format of ``evals/golden.jsonl``).

    Only ``question`` is required; missing fields get empty defaults, so a plain list of
    questions still runs (with retrieval and correctness metrics left out).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenError(f"cannot read {path}: {exc}") from None
    items: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise GoldenError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise GoldenError(f"{path}:{number}: needs an object with a 'question' string")
        item.setdefault("id", f"q{number}")
        item.setdefault("type", "unanswerable" if item.get("key_facts") == [] else "corpus")
        for key in ("history", "key_facts", "sources", "evidence"):
            item.setdefault(key, [])
        item.setdefault("answer", "")
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    return items


def golden_problems(item: Mapping[str, Any], corpus: Mapping[str, str]) -> list[str]:
    """What is wrong with one golden item (empty when it is valid); ``corpus`` maps file names
    to their text. The rules of ``evals/README.md``: exact fields, known type, history only for
    follow-ups, lowercase key-fact groups, one verbatim single-line quote per source, key facts
    present in the quotes and in the reference answer, sources that fit the type."""
    out: list[str] = []
    if list(item) != list(FIELDS):
        return [f"fields must be exactly {', '.join(FIELDS)} (got {', '.join(map(str, item))})"]
    kind = item["type"]
    if not isinstance(item["id"], str) or not item["id"]:
        out.append("id must be a non-empty string")
    if kind not in TYPES:
        out.append(f"unknown type {kind!r}")
    for name in ("question", "answer"):
        if not isinstance(item[name], str) or not item[name].strip():
            out.append(f"{name} must be a non-empty string")
    history = item["history"]
    if not isinstance(history, list) or not all(
        isinstance(t, dict) and set(t) == {"role", "content"} and t["role"] in ("user", "assistant")
        and isinstance(t["content"], str) and t["content"].strip()
        for t in history
    ):
        out.append("history must be a list of {role: user|assistant, content: text}")
    elif (kind == "followup") != bool(history):
        out.append("history must be non-empty for follow-ups and empty otherwise")
    facts, sources, evidence = item["key_facts"], item["sources"], item["evidence"]
    if not (isinstance(facts, list) and all(
        isinstance(g, list) and g and all(isinstance(a, str) and a.strip() and a == a.lower() for a in g)
        for g in facts
    )):
        return [*out, "key_facts must be a list of non-empty lists of lowercase strings"]
    if not (isinstance(sources, list) and isinstance(evidence, list)
            and all(isinstance(x, str) for x in sources + evidence)):
        return [*out, "sources and evidence must be lists of strings"]
    if kind == "unanswerable":
        if facts or sources or evidence:
            out.append("unanswerable items have no key_facts, sources or evidence")
        return out
    if not facts or not sources:
        out.append("answerable items need key_facts and sources")
    if len(evidence) != len(sources):
        out.append("one evidence quote per source")
    for source, quote in zip(sources, evidence, strict=False):
        if source not in corpus:
            out.append(f"source {source!r} is not a corpus document")
        elif "\n" in quote or quote not in corpus[source]:
            out.append(f"evidence is not a single-line verbatim quote of {source}: {quote[:60]!r}")
    text = " ".join([*evidence, item["answer"]]).lower()
    for group in facts:
        if not any(alt in text for alt in group):
            out.append(f"key-fact group {group} is in neither the evidence nor the answer")
        if not any(alt in item["answer"].lower() for alt in group):
            out.append(f"the reference answer fails its own key-fact group {group}")
    if kind == "article" and sources != [ARTICLE]:
        out.append(f"article items cite only {ARTICLE}")
    if kind == "corpus" and (len(sources) != 1 or ARTICLE in sources):
        out.append("corpus items cite exactly one document other than the article")
    if kind == "multi" and len(set(sources)) < 2:
        out.append("multi items cite at least two documents")
    return out


def read_corpus(folder: Path) -> dict[str, str]:
    """The corpus documents by file name (``SOURCES.md``, the attribution list, is not one)."""
    return {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix in (".md", ".txt") and p.name != "SOURCES.md"
    }


@dataclass
class Pipeline:
    """What one eval run exercises: the answering API and the judge of generated sentences
    (extractive sentences are always judged exactly). With ``answers`` False the questions are
    only ranked, by the assistant's own condense and retrieve steps."""

    name: str
    assistant: Assistant
    judge: Judge
    model: str = ""
    answers: bool = True


def _ranking(passages: Sequence[Mapping[str, Any]] | Sequence[Passage]) -> list[dict[str, Any]]:
    """Ranked passages as the metrics read them: source, chunk id, score, text."""
    return [
        dict(p)
        if isinstance(p, Mapping)
        else {"source": p.source, "chunk_id": p.chunk_id, "score": round(p.similarity, 4), "text": p.text}
        for p in passages
    ]


def evaluate(
    items: Sequence[dict[str, Any]],
    pipeline: Pipeline,
    *,
    ks: Sequence[int] = KS,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Answer and score every item; one result row per item (see ``evals/README.md``).

    The ranking scored is the one the answer came from: the chain is asked to rank ``max(ks)``
    (10) deep, answers from the first ``top_k`` and returns the whole ranking in
    ``Answer.retrieved``. Nothing ranks a second time beside it.
    """
    exact = ExactJudge()
    rows: list[dict[str, Any]] = []
    depth = max(ks)
    assistant = pipeline.assistant
    for done, item in enumerate(items, start=1):
        question, history = item["question"], list(item.get("history") or [])
        answer: dict[str, Any] | None = None
        error = None
        started = time.perf_counter()
        if pipeline.answers:
            try:
                answer = assistant.ask(question, history, k=depth).to_dict()
                ranking = _ranking(answer["retrieved"])
                standalone = answer.get("standalone_question") or question
            except Exception as exc:  # noqa: BLE001 - one failing question is a result, not a crash
                error = f"{type(exc).__name__}: {exc}"
                answer = {"answer": "", "refused": False, "citations": [], "retrieved": [], "mode": "error"}
                ranking, standalone = _ranking_of_failed(assistant, question, history, depth)
        else:
            turn = assistant.retrieve(question, history, k=depth)
            ranking, standalone = _ranking(turn.passages), turn.standalone
        retrieve_ms = (time.perf_counter() - started) * 1000
        judge = exact if answer is None or answer.get("mode") in ("extractive", "error") else pipeline.judge
        metrics = score(item, answer, ranking, judge, ks)
        if answer is None:
            metrics["latency.retrieve_ms"] = retrieve_ms
        rows.append(
            {
                "id": item["id"],
                "type": item["type"],
                "answerer": pipeline.name,
                "question": question,
                "history": history,
                "reference": item.get("answer", ""),
                "standalone_question": standalone,
                "judge": judge.name if answer is not None else None,
                "metrics": metrics,
                "answer": answer,
                "ranking": [{k: v for k, v in r.items() if k != "text"} for r in ranking],
                "error": error,
            }
        )
        if progress:
            progress(done, len(items))
    return rows


def _ranking_of_failed(
    assistant: Assistant, question: str, history: list[dict[str, Any]], depth: int
) -> tuple[list[dict[str, Any]], str]:
    """The ranking of a question whose answer failed (the answerer, not retrieval, may be at
    fault); empty when ranking fails too."""
    try:
        turn = assistant.retrieve(question, history, k=depth)
    except Exception:  # noqa: BLE001 - the question's error is already recorded
        return [], question
    return _ranking(turn.passages), turn.standalone


# --- building the pipelines the CLI runs -----------------------------------------------------


def answerer_settings(settings: Settings, name: str) -> Settings:
    """Settings for an answerer name: ``extractive``, ``openai``, ``llamacpp`` or ``llamacpp-0.5b``."""
    base, _, size = name.partition("-")
    if base not in ("extractive", "openai", "llamacpp") or (size and base != "llamacpp"):
        raise ValueError(
            f"unknown answerer {name!r} (extractive, openai, llamacpp, llamacpp-0.5b, llamacpp-1.5b)"
        )
    update: dict[str, Any] = {"answerer": base}
    if size:
        if size not in ("0.5b", "1.5b"):
            raise ValueError(f"unknown llamacpp model {size!r} (0.5b or 1.5b)")
        update["llm_model"] = size
    if base == "openai" and not settings.openai_base_url:
        raise ValueError("the openai answerer needs RAG_OPENAI_BASE_URL")
    return settings.model_copy(update=update)


def llamacpp_installed(settings: Settings, size: str | None = None) -> bool:
    """True when llama-cpp-python and the GGUF file of the model (``size`` or the setting) are here."""
    from importlib.util import find_spec

    if find_spec("llama_cpp") is None:
        return False
    variant = settings.model_copy(update={"llm_model": size}) if size else settings
    return model_path(variant).is_file()


def available_answerers(settings: Settings) -> list[str]:
    """Every answerer this machine can run: extractive always, the others when configured."""
    out = ["extractive"]
    if settings.openai_base_url:
        out.append("openai")
    out += [f"llamacpp-{size}" for size in ("0.5b", "1.5b") if llamacpp_installed(settings, size)]
    return out


def build_judge(settings: Settings, kind: str = "auto") -> Judge:
    """The judge for generated sentences: ``llamacpp`` (local, preferred), ``openai``
    (any OpenAI-compatible server), or ``match`` (word overlap, the chain's own check, when no
    LLM is available). ``auto`` takes the first available in that order."""
    if kind == "auto":
        if llamacpp_installed(settings):
            kind = "llamacpp"
        else:
            kind = "openai" if settings.openai_base_url else "match"
    if kind == "llamacpp":
        return build_llamacpp_judge(settings)
    if kind == "openai":
        if not settings.openai_base_url:
            raise ValueError("the openai judge needs RAG_OPENAI_BASE_URL")
        return VerifierJudge(
            chat_model_judge(build_openai_model(settings)), name=f"openai:{settings.openai_model}"
        )
    if kind == "match":
        return VerifierJudge(verify_by_match, name="match (word overlap; no LLM judge available)")
    raise ValueError(f"unknown judge {kind!r} (auto, llamacpp, openai, match)")


def build_llamacpp_judge(settings: Settings) -> Judge:
    """The local model's strict yes/no per sentence; a sentence quoted from its passage passes
    outright (stricter than the chain's own verifier, which also accepts 90% word overlap)."""
    model = llamacpp_judge(settings)
    exact = ExactJudge()

    def verify(claim: str, passages: Sequence[Passage]) -> bool | None:
        return True if exact.supported(claim, passages) else model(claim, passages)

    return VerifierJudge(verify, name=f"llamacpp-{settings.llm_model} (strict yes/no)")


def build_pipeline(
    settings: Settings, name: str, embeddings: Embeddings, *, judge: str = "auto"
) -> Pipeline:
    """The real pipeline for one answerer name (or ``retrieval-only``) over the built index."""
    if name == RETRIEVAL_ONLY:
        # Ranked as the extractive assistant ranks: follow-ups condensed without a model.
        assistant = open_assistant(answerer_settings(settings, "extractive"), embeddings=embeddings)
        return Pipeline(name, assistant, ExactJudge(), model="", answers=False)
    variant = answerer_settings(settings, name)
    assistant = open_assistant(variant, embeddings=embeddings)
    model = {
        "extractive": f"extractive (sentences ranked with {embedding_name(settings)})",
        "openai": f"openai:{variant.openai_model} at {variant.openai_base_url}",
        "llamacpp": f"llamacpp:{variant.llm_model_path or variant.llm_model}",
    }[variant.answerer]
    # Extractive answers are always judged exactly; only generated answers need a judge model.
    judged = ExactJudge() if variant.answerer == "extractive" else build_judge(variant, judge)
    return Pipeline(name, assistant, judged, model=model)


def run_cli(
    settings: Settings,
    *,
    questions: Path,
    out: Path,
    answerers: Sequence[str] = (),
    compare: Path | None = None,
    gate: Path | None = None,
    limit: int | None = None,
    retrieval_only: bool = False,
    judge: str = "auto",
    embeddings_factory: Callable[[], Embeddings] | None = None,
    pipeline_factory: Callable[[Settings, str, Embeddings], Pipeline] | None = None,
    echo: Callable[[str], None] | None = None,
) -> int:
    """``rag eval``: run, write the report, compare, gate. Returns the exit code (0 ok, 1 gate
    failed, 2 usage error). Factories are parameters so tests can hand in fakes."""
    from rag.evaluation import report as eval_report

    say = echo or _echo
    thresholds = None
    try:
        items = load_questions(questions, limit)
        if gate is not None:
            thresholds = eval_report.load_thresholds(gate)
        names = _answerer_names(settings, answerers, thresholds, retrieval_only)
        for name in names:
            if name != RETRIEVAL_ONLY:
                answerer_settings(settings, name)
    except (GoldenError, ValueError) as exc:
        say(f"error: {exc}")
        return 2
    if not items:
        say(f"error: no questions in {questions}")
        return 2

    cache: dict[str, Embeddings] = {}

    def embeddings() -> Embeddings:
        if "e" not in cache:
            if embeddings_factory is not None:
                cache["e"] = embeddings_factory()
            else:
                cache["e"] = build_embeddings(settings)
        return cache["e"]

    try:
        refresh_index(settings, embeddings_factory=embeddings, progress=say)
    except IndexProblem as exc:
        say(f"error: {exc}")
        return 2
    make = pipeline_factory or (lambda s, n, e: build_pipeline(s, n, e, judge=judge))
    runs: dict[str, dict[str, Any]] = {}
    all_rows: list[dict[str, Any]] = []
    for name in names:
        pipeline = make(settings, name, embeddings())
        if retrieval_only:
            pipeline = replace(pipeline, answers=False)
        started = time.perf_counter()
        with _progress_bar(f"eval {name}", len(items)) as update:
            rows = evaluate(items, pipeline, progress=update)
        seconds = time.perf_counter() - started
        all_rows += rows
        judges = sorted({r["judge"] for r in rows if r["judge"]})
        runs[name] = {
            "model": pipeline.model,
            "judge": {"generated": pipeline.judge.name if pipeline.answers else None, "used": judges},
            "seconds": round(seconds, 1),
            **aggregate(rows),
        }
        say(f"{name}: {len(rows)} questions in {seconds:.0f} s")
    report = eval_report.build_report(settings, runs, questions=questions, n_questions=len(items))
    eval_report.write_all(out, all_rows, report)
    if not retrieval_only:
        by_id = {str(item.get("id")): item for item in items}
        write_ragas(out, all_rows, by_id, settings.top_k)  # ragas-<answerer>.jsonl, for RAGAS users
    say(eval_report.summary_text(report))
    say(f"report: {out / 'report.md'}")
    code = 0
    if compare is not None:
        try:
            base = eval_report.load_report(compare)
        except ValueError as exc:
            say(f"error: {exc}")
            return 2
        text = eval_report.compare_markdown(base, report)
        (out / "compare.md").write_text(text, encoding="utf-8")
        say(text)
    if thresholds is not None:
        failures, checked = eval_report.check_gate(report, thresholds, retrieval_only=retrieval_only)
        if failures:
            say("eval gate FAILED:\n" + "\n".join(f"  {f}" for f in failures))
            code = 1
        else:
            say(f"eval gate passed ({checked} thresholds)")
    return code


def _answerer_names(
    settings: Settings, requested: Sequence[str], thresholds: dict[str, Any] | None, retrieval_only: bool
) -> list[str]:
    if retrieval_only:
        return [RETRIEVAL_ONLY]
    if requested:
        return list(dict.fromkeys(requested))
    if thresholds is not None:
        return [name for name in thresholds if not name.startswith("_")]
    return available_answerers(settings)


@contextmanager
def _progress_bar(label: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on a terminal; a line every fifth of the way in a log."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    terminal = sys.stderr.isatty()
    step = max(1, total // 5)
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True, disable=not terminal,
    ) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            if not terminal and (done % step == 0 or done == total):
                print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)

        yield update


def _echo(text: str) -> None:
    print(text, flush=True)
