"""Docstring examples of the core modules are tests too."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "rag.config",
    "rag.text",
    "rag.index.splitting",
    "rag.retrieval.fusion",
    "rag.retrieval.routing",
    "rag.answering.citations",
    "rag.answering.condense",
    "rag.answering.questions",
    "rag.answering.prompts",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
