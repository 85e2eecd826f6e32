"""The project's text toolkit: content words, sentences, and the forms texts are compared in.

Retrieval (routing rules, question parts), answering (condensing, the extractive answerer,
citation checks) and the eval all count words and split sentences the same way, from here.

>>> content_tokens("What is the capital of North Korea?")
['capital', 'north', 'korea']
>>> split_sentences("Pyongyang is the capital [1]. It lies on the Taedong. [2]")
['Pyongyang is the capital [1].', 'It lies on the Taedong. [2]']
>>> normalise("The  Strategic\\u00a0patience [2].")
'the strategic patience [2].'
"""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import Any

# "[1]", "[2, 3]": the passage markers of an answer. Text comparisons leave them out.
MARKER = re.compile(r"\s*\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
LEADING_MARKERS = re.compile(r"(?:\[\d{1,3}(?:\s*,\s*\d{1,3})*\]\s*)+")
CLAIM_BREAK = re.compile(r"(?<=\d\])\s+(?=[A-Z(])")
_BRACKETED = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
# In an answer every marker closes its claim, also before a figure or a lowercase word (quoted
# list items: "(2012) [1] 20-30 years"); in a passage "[98] 21 2254 2178" is a telephone number.
ANSWER_CLAIM_BREAK = re.compile(r"(?<=\d\])\s+(?=[a-z0-9])")
WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
STOPWORDS = frozenset(
    "a an the of and or to in on at by for from with as is are was were be been being it its this"
    " that these those which who whom what when where why how do does did has have had not no"
    " than then there their they them he she his her we you your our i me my".split()
)
# The section a document's card (title, author, source) is filed under by the splitter; a
# sentence of the card is not a list item of a section.
# How a sentence ends: a full stop, question or exclamation mark, colon or semicolon (or an
# ellipsis), maybe inside closing quotes or brackets, or a citation marker.
SENTENCE_END = re.compile(r"(?:[.!?:;\u2026][\"'\u201d\u2019)\]]*|\[\d{1,3}(?:\s*,\s*\d{1,3})*\])\s*$")
NUMBER_THEN_SENTENCE = re.compile(r"(\d+[.)])\s+(?=[A-Z])")
CARD_SECTION = "About this document"

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
        # pysbd takes an enumerator for a new sentence: "... under subsection (a)." comes back
        # as "... under subsection" and "(a).". A piece that stops without a full stop (or a
        # marker) did not end its sentence: it runs on, as the line has it, to the next.
        pieces: list[str] = []
        start = cursor = 0
        for piece in _segmenter().segment(line):
            piece = piece.strip()
            found = line.find(piece, cursor)
            if found < 0:  # not where expected (pysbd changed it): keep pysbd's split
                pieces.append(piece)
                start = cursor
                continue
            cursor = found + len(piece)
            number = NUMBER_THEN_SENTENCE.match(piece)
            if pieces and not SENTENCE_END.search(pieces[-1]) and number:
                # "... at site " + "0. Sentence 1 ...": the number (and its full stop) ended
                # the sentence before; the rest is a sentence of its own.
                pieces[-1] = line[start : found + len(number.group(1))]
                start = found + number.end()
                pieces.append(line[start:cursor])
            elif pieces and not SENTENCE_END.search(pieces[-1]):
                pieces[-1] = line[start:cursor]
            else:
                start = found
                pieces.append(piece)
        for sentence in pieces:
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


def split_claims(answer: str) -> list[str]:
    """The claims of an answer: its sentences, cut after every ``[n]`` marker.

    >>> split_claims("Age: 18 (2012) [1] 20-30 years of age [3]")
    ['Age: 18 (2012) [1]', '20-30 years of age [3]']
    """
    return [
        part for sentence in split_sentences(answer) for part in ANSWER_CLAIM_BREAK.split(sentence) if part
    ]


def strip_markers(text: str) -> str:
    """``text`` without its ``[n]`` markers.

    >>> strip_markers("Seoul joined in 2001 [1][3].")
    'Seoul joined in 2001.'
    """
    return MARKER.sub("", text).strip()


def content_tokens(text: str) -> list[str]:
    """The lowercase words of ``text`` that carry meaning (stopwords left out), in order."""
    return [t for t in WORD.findall(text.lower()) if t not in STOPWORDS]


def overlap(claim: str, passage: str) -> float:
    """Share of the claim's content words that appear in the passage (0 when it has none).

    >>> overlap("The coastline of North Korea [1].", "Korea's coastline")
    0.6666666666666666
    """
    claim_tokens = set(content_tokens(strip_markers(claim)))
    if not claim_tokens:
        return 0.0
    return len(claim_tokens & set(content_tokens(passage))) / len(claim_tokens)


def normalise(text: str, *, casefold: bool = True) -> str:
    """The form texts are compared in: NFKC (non-breaking and narrow spaces become spaces),
    whitespace collapsed, lowercase unless ``casefold`` is False."""
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return text.lower() if casefold else text


def quote_key(text: str) -> str:
    """A claim or sentence as quotes are looked for: ``normalise``d without its ``[n]`` markers
    and the punctuation at its ends, so a claim matches the sentence it was cut from.

    >>> quote_key("Seoul joined in 2001 [1].")
    'seoul joined in 2001'
    """
    return normalise(strip_markers(text)).strip(" .;:")


def is_quoted(claim: str, passage: str) -> bool:
    """True when the claim (markers removed) appears word for word in the passage, whose own
    bracketed numbers may be quoted in parentheses (``plain_brackets``).

    >>> is_quoted("The coastline is 2,495 km [1].", "Coastline: the  coastline is 2,495 km long.")
    True
    >>> is_quoted("telephone: (82) (2) 397-4114 [1]", "- telephone: [82] (2) 397-4114")
    True
    """
    form = quote_key(claim)
    # The claim has no "[n]" left, so the passage with its own brackets as "(n)" is the one form
    # a quote of it can match (the extractive answerer quotes that form).
    return bool(form) and form in normalise(plain_brackets(passage))


def plain_brackets(text: str) -> str:
    """A document's own bracketed numbers written in parentheses, so that a sentence quoted from
    it cannot be read as citing passages: the Factbooks' telephone numbers ("[82] (2) 397-4114")
    and Wikipedia's footnotes ("[12]") would otherwise become markers of the answer, cut the
    quote there and point at the wrong passage.

    >>> plain_brackets("- telephone: [82] (2) 397-4114; see [3, 4]")
    '- telephone: (82) (2) 397-4114; see (3, 4)'
    """
    return _BRACKETED.sub(r"(\1)", text)


def best_quote(claim: str, passage: str) -> str:
    """The sentence of ``passage`` that best supports ``claim`` (by shared content words).

    >>> best_quote("Exports fell [2].", "Imports rose. Exports fell sharply in 2017.")
    'Exports fell sharply in 2017.'
    >>> best_quote("Telephone: (1) (202) 495-2266 [4]", "It has an embassy. Telephone: [1] (202) 495-2266")
    'Telephone: (1) (202) 495-2266'
    """
    # The passage's own "[1]" is not a marker: the sentence stays whole, as the answer quotes it.
    sentences = split_sentences(plain_brackets(passage)) or [passage]
    form = quote_key(claim)
    for sentence in sentences:
        if form and form in quote_key(sentence):
            return sentence
    return max(sentences, key=lambda s: (overlap(claim, s), -len(s)))
