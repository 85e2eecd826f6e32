"""Citations: the ``[n]`` markers that tie an answer's sentences to the passages behind them.

``[n]`` refers to the n-th passage the answerer was given (``Answer.retrieved[n - 1]``).

>>> clean_markers("Pyongyang tested in 2016 [2][9].", valid={1, 2})
'Pyongyang tested in 2016 [2].'
>>> markers_in("A claim [1, 3].")
[1, 3]
"""

from __future__ import annotations

import re

from rag.text import MARKER, strip_markers

__all__ = ["MARKER", "clean_markers", "markers_in", "strip_markers"]


def markers_in(text: str) -> list[int]:
    """The passage numbers ``text`` cites, in order of first mention."""
    numbers: list[int] = []
    for match in MARKER.finditer(text):
        for part in match.group(1).split(","):
            n = int(part)
            if n not in numbers:
                numbers.append(n)
    return numbers


def clean_markers(text: str, valid: set[int]) -> str:
    """Drop markers that point at no given passage; normalise ``[1, 2]`` to ``[1][2]``."""

    def fix(match: re.Match[str]) -> str:
        kept = []
        for part in match.group(1).split(","):
            n = int(part)
            if n in valid and n not in kept:
                kept.append(n)
        if not kept:
            return ""
        lead = " " if match.group(0)[:1].isspace() else ""
        return lead + "".join(f"[{n}]" for n in kept)

    return MARKER.sub(fix, text)
