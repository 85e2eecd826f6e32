"""Docstring examples are tests too: every module of rag/ that has them, found by walking the
package (a hand-kept list of modules once left 12 examples in four modules unrun)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import rag

FINDER = doctest.DocTestFinder()


def modules_with_examples() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(rag.__path__, "rag.")]
    return [n for n in names if any(t.examples for t in FINDER.find(importlib.import_module(n)))]


MODULES = modules_with_examples()


def test_the_examples_are_found() -> None:
    assert {"rag.text", "rag.retrieval.routing", "rag.answering.llamacpp", "rag.slack.format"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
