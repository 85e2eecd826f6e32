"""What runs where: plain `pytest` runs the fast unit tests, `make test` everything, and a missing
optional extra is a skip with its reason, except under `make test` (RAG_REQUIRE_EXTRAS=1)."""

from __future__ import annotations

import re
import tomllib

import pytest

from tests import conftest
from tests.conftest import REPO, require_extra


def test_plain_pytest_leaves_out_integration_and_slow_tests() -> None:
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-m 'not integration and not slow'" in options["addopts"]
    assert "--strict-markers" in options["addopts"]


def test_make_test_runs_every_marker_and_requires_the_extras() -> None:
    makefile = (REPO / "Makefile").read_text()
    line = next(line for line in makefile.splitlines() if "-m pytest" in line and "REQUIRE_EXTRAS" in line)
    assert re.search(r'RAG_REQUIRE_EXTRAS=1 .*-m "integration or slow or not \(integration or slow\)"', line)


def test_a_missing_extra_is_a_skip_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "REQUIRE_EXTRAS", False)
    require_extra(True, "unused")
    with pytest.raises(pytest.skip.Exception, match="llama-cpp-python is not installed"):
        require_extra(False, "llama-cpp-python is not installed")


def test_a_missing_extra_fails_when_extras_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "REQUIRE_EXTRAS", True)
    with pytest.raises(pytest.fail.Exception, match="llama-cpp-python is not installed"):
        require_extra(False, "llama-cpp-python is not installed")


def test_make_test_gates_every_committed_question_set() -> None:
    makefile = (REPO / "Makefile").read_text()
    gated = re.search(r"^EVAL_SETS := (.+)$", makefile, re.MULTILINE)
    assert gated, "Makefile: EVAL_SETS lists the gated question sets"
    committed = {p.stem.removeprefix("thresholds-") for p in (REPO / "evals").glob("thresholds-*.json")}
    assert set(gated.group(1).split()) == committed and len(committed) >= 8
    assert all((REPO / "evals" / f"{name}.jsonl").is_file() for name in committed)
