"""Prompt texts, kept as files so they can be read and reviewed as prose, and how passages are
shown in them."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.retrieval import Passage


@cache
def load(name: str) -> str:
    """The text of ``rag/answering/prompts/<name>.txt`` without its trailing newline.

    >>> load("refusal").startswith("I could not find")
    True
    """
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8").rstrip("\n")


def refusal() -> str:
    """What the assistant says when the documents do not answer the question."""
    return load("refusal")


def format_passages(passages: Sequence[Passage]) -> str:
    """The numbered passages of a prompt: ``[n] (title > section)`` then the text.

    >>> from rag.retrieval import Passage
    >>> print(format_passages([Passage("c1", "GDP grew.", {"title": "Korea", "section": "Economy"}, 0.5)]))
    [1] (Korea > Economy)
    GDP grew.
    """
    blocks = []
    for n, p in enumerate(passages, start=1):
        where = " > ".join(x for x in (p.title, p.section) if x)
        blocks.append(f"[{n}] ({where})\n{p.text}")
    return "\n\n".join(blocks)
