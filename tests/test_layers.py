"""The architecture, checked: imports flow one way (index -> retrieval -> answering -> front
ends), front ends use only the answering API, nothing imports in a circle, and importing a
front end loads no model, database or UI library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rag.answering

REPO = Path(__file__).resolve().parent.parent
RAG = REPO / "rag"

# Lower layers never import higher ones; the base (settings, text toolkit) imports no layer.
LAYERS = {
    "rag.config": 0,
    "rag.text": 0,
    "rag.runtime": 0,
    "rag.observability": 0,
    "rag.index": 1,
    "rag.retrieval": 2,
    "rag.answering": 3,
    "rag.feedback": 4,
    "rag.ratelimit": 4,
    "rag.tuning": 4,
    "rag.web": 5,
    "rag.slack": 5,
    "rag.evaluation": 5,
    "rag.cli": 5,
}
FRONT_ENDS = ("rag.web", "rag.slack", "rag.evaluation", "rag.cli")
# What front ends may import: the answering API, the settings and the shared front-end helpers
# (metrics and logs among them; the CLI starts the other front ends), and the tuning of the
# answerer's reader, which `rag tune` runs.
FRONT_END_API = {
    "rag.tuning",
    "rag.answering",
    "rag.config",
    "rag.runtime",
    "rag.feedback",
    "rag.ratelimit",
    "rag.observability",
}
HEAVY = ("torch", "transformers", "sentence_transformers", "openvino", "chromadb", "gradio", "llama_cpp")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in RAG.rglob("*.py")}
    found["app"] = REPO / "app.py"
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The rag modules ``path`` imports, at the top or inside functions (``from rag.answering
    import prompts`` is the module rag.answering.prompts)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "rag"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rag":
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out |= subs or {node.module}
    return out


def package(module: str) -> str:
    """The entry of ``LAYERS`` that holds ``module`` (the module itself when none does)."""
    return next((p for p in LAYERS if module == p or module.startswith(p + ".")), module)


def layer(module: str) -> int | None:
    return LAYERS.get(package(module))


GRAPH = {name: imports(path, set(modules())) for name, path in modules().items()}


def test_every_module_has_a_layer() -> None:
    assert [m for m in GRAPH if m not in ("rag", "app") and layer(m) is None] == []


def test_imports_flow_one_way() -> None:
    upward = [
        f"{m} -> {i}"
        for m, targets in GRAPH.items()
        for i in targets
        if layer(m) is not None and layer(i) is not None and layer(i) > layer(m)  # type: ignore[operator]
    ]
    assert upward == []


def test_front_ends_use_only_the_answering_api() -> None:
    reaching = [
        f"{m} -> {i}"
        for m, targets in GRAPH.items()
        if m == "app" or m.startswith(FRONT_ENDS)
        for i in targets
        if i not in FRONT_END_API and package(i) not in FRONT_ENDS
    ]
    assert reaching == []


def test_no_import_cycles() -> None:
    # A package's __init__ re-exporting its modules is not a dependency of those modules.
    graph = {m: {i for i in t if i != m and not m.startswith(i + ".")} for m, t in GRAPH.items()}
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    assert cycles == []


def test_the_answering_api_is_pinned() -> None:
    assert sorted(rag.answering.__all__) == [
        "Answer",
        "Answerer",
        "AnswererError",
        "Assistant",
        "AssistantRunnable",
        "Citation",
        "Delta",
        "DocumentInfo",
        "DocumentLibrary",
        "DocumentNotFoundError",
        "IndexProblem",
        "IngestBusyError",
        "MARKER",
        "Passage",
        "QuestionError",
        "Sentence",
        "Turn",
        "TurnState",
        "Upload",
        "UploadResult",
        "Verifier",
        "build_embeddings",
        "build_openai_model",
        "chat_model_judge",
        "check_question",
        "embedding_name",
        "index_status",
        "install_model",
        "llamacpp_judge",
        "markers_in",
        "model_path",
        "normalise",
        "open_assistant",
        "open_library",
        "plain_brackets",
        "refresh_index",
        "split_claims",
        "split_sentences",
        "strip_markers",
        "update_index",
        "verify_by_match",
    ]
    assert all(hasattr(rag.answering, name) for name in rag.answering.__all__)


@pytest.mark.parametrize(
    "module", ["rag.answering", "rag.web.app", "rag.slack.bot", "rag.evaluation.harness", "rag.cli"]
)
def test_importing_loads_nothing_heavy(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""
