"""Citations: ``[n]`` markers, sentence splitting, and finding the sentence that backs a claim.

>>> clean_markers("Pyongyang tested in 2016 [2][9].", valid={1, 2})
'Pyongyang tested in 2016 [2].'
>>> markers_in("A claim [1, 3].")
[1, 3]
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

MARKER = re.compile(r"\s*\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
LEADING_MARKERS = re.compile(r"(?:\[\d{1,3}(?:\s*,\s*\d{1,3})*\]\s*)+")
CLAIM_BREAK = re.compile(r"(?<=\d\])\s+(?=[A-Z(])")
WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
STOPWORDS = frozenset(
    "a an the of and or to in on at by for from with as is are was were be been being it its this"
    " that these those which who whom what when where why how do does did has have had not no"
    " than then there their they them he she his her we you your our i me my".split()
)


@dataclass
class Sentence:
    """One sentence of an answer, the passage numbers it cites, and whether they support it."""

    text: str
    citations: list[int]
    supported: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "citations": self.citations, "supported": self.supported}


_local = threading.local()


def _segmenter() -> Any:
    # pysbd's Segmenter keeps the text being split on the instance: one per thread, or
    # concurrent requests (web queue workers, Slack handlers) get each other's sentences.
    segmenter = getattr(_local, "segmenter", None)
    if segmenter is None:
        import pysbd

        segmenter = _local.segmenter = pysbd.Segmenter(language="en", clean=False)
    return segmenter


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; line breaks (list items, headings) always end a sentence."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        for sentence in _segmenter().segment(line):
            # A marker followed by a new capitalised claim ends a sentence even without a full
            # stop (extractive answers quote list items: "Coastline: 2,495 km [1] Capital: ...").
            for part in CLAIM_BREAK.split(sentence):
                part = part.strip()
                if part:
                    out.append(part)
    # pysbd splits "... so [2]. Next" correctly, but in "Claim. [1] Next. [2]" (the extractive
    # answer's shape) it starts the next sentence with the marker: give it back to its claim.
    merged: list[str] = []
    for sentence in out:
        lead = LEADING_MARKERS.match(sentence)
        if merged and lead:
            merged[-1] = merged[-1] + " " + lead.group(0).strip()
            sentence = sentence[lead.end() :].strip()
        if sentence:
            merged.append(sentence)
    return merged


def markers_in(text: str) -> list[int]:
    numbers: list[int] = []
    for match in MARKER.finditer(text):
        for part in match.group(1).split(","):
            n = int(part)
            if n not in numbers:
                numbers.append(n)
    return numbers


def strip_markers(text: str) -> str:
    return MARKER.sub("", text).strip()


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


def content_tokens(text: str) -> list[str]:
    return [t for t in WORD.findall(text.lower()) if t not in STOPWORDS]


def overlap(claim: str, passage: str) -> float:
    """Share of the claim's content words that appear in the passage (0 when it has none)."""
    claim_tokens = set(content_tokens(strip_markers(claim)))
    if not claim_tokens:
        return 0.0
    return len(claim_tokens & set(content_tokens(passage))) / len(claim_tokens)


def normalise(text: str) -> str:
    return " ".join(strip_markers(text).lower().split()).strip(" .;:")


def is_quoted(claim: str, passage: str) -> bool:
    """True when the claim (markers removed) appears word for word in the passage."""
    norm = normalise(claim)
    return bool(norm) and norm in " ".join(passage.lower().split())


def best_quote(claim: str, passage: str) -> str:
    """The sentence of ``passage`` that best supports ``claim`` (by shared content words)."""
    sentences = split_sentences(passage) or [passage]
    claim_norm = normalise(claim)
    for sentence in sentences:
        if claim_norm and claim_norm in normalise(sentence):
            return sentence
    return max(sentences, key=lambda s: (overlap(claim, s), -len(s)))
