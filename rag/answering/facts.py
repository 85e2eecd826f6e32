"""Facts: the numbers, dates and names a sentence states, and a verifier that requires them.

A written sentence can reuse nearly every word of a passage and still change the one that
matters: "the hack cost the company $60 billion [1]", "FATF started with 9 members [2]" where the
passage says 16. Word overlap passes such a sentence (one word in ten is wrong) and a small
yes/no judge often does too. ``strict(verifier)`` first asks whether every number, date and name
of the claim is in the passages it cites (their title, section and text), and rejects the claim
when one is not, whatever ``verifier`` would say::

    verify = strict(verify_by_match)

Formatting does not count against a claim: 1,000 and 1000, 16 and sixteen, 75.8% and 75.8
percent, $60 billion and 60,000,000,000, U.S. and US, Korea's and Korea, Jong-un and Jong Un,
Korean and Korea, FATF and Financial Action Task Force. A sentence quoted from a passage holds
every fact of that passage's words, so quotes always pass (``tests/test_facts.py`` checks it on
the corpus's own sentences).

>>> p = Passage("c1", "The FATF was founded in 1989 with 16 members.", {"title": "FATF"}, 0.5)
>>> missing_facts("FATF started with 9 members in 1989 [1].", [p])
['9']
>>> missing_facts("The Financial Action Task Force began in 1989 with sixteen members.", [p])
[]
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from rag.answering.verification import Verifier
from rag.retrieval import Passage
from rag.text import STOPWORDS, strip_markers

__all__ = ["Facts", "claim_facts", "missing_facts", "strict"]

# --- numbers ------------------------------------------------------------------------------------

# A number not glued to a letter or digit before it (G20 and B52 are names, not numbers):
# 1,000 / 3.5 / 16th / 1990s / $60 (the sign is not part of it).
_DIGITS = re.compile(r"(?<![^\W_])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")
_SCALE_AFTER = re.compile(r"\s*-?\s*(thousand|million|billion|trillion|bn|mn)\b", re.IGNORECASE)
_SCALES = {
    "thousand": 10**3,
    "million": 10**6,
    "mn": 10**6,
    "billion": 10**9,
    "bn": 10**9,
    "trillion": 10**12,
}
# "1950-53": a passage's second year is 1953 too.
_YEAR_RANGE = re.compile(r"(?<!\d)(1[0-9]|20)(\d\d)\s*[-–]\s*(\d\d)(?!\d)")
_ENUMERATOR = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[-•])\s+")
# "passage 2", "source 1": the answer talking about its own passages, not a fact.
_SELF_REFERENCE = re.compile(r"\b(?:passages?|sources?|documents?|paragraphs?)\s*$", re.IGNORECASE)

_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
    " sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_UNITS = (
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth"
    " thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth"
).split()
_ORDINAL_TENS = "twentieth thirtieth fortieth fiftieth sixtieth seventieth eightieth ninetieth".split()
_NUMBER_WORDS: dict[str, int] = {
    **{w: i for i, w in enumerate(_UNITS)},
    **{w: 10 * (i + 2) for i, w in enumerate(_TENS)},
    **{w: i for i, w in enumerate(_ORDINAL_UNITS)},
    **{w: 10 * (i + 2) for i, w in enumerate(_ORDINAL_TENS)},
}
# Alone in a claim these are mostly not numbers ("one of the largest", "the first time", "a
# second round"); a passage's "one" still backs a claim's "1".
_VAGUE_ALONE = frozenset({"one", "first", "second"})
_NUMBER_WORD = "(?:{})".format("|".join(sorted([*_NUMBER_WORDS, "hundred", *_SCALES], key=len, reverse=True)))
# "sixteen", "twenty-five", "two hundred", "nine million": number words in a row.
_WORD_NUMBER = re.compile(rf"\b{_NUMBER_WORD}\b(?:[\s-]+{_NUMBER_WORD}\b)*", re.IGNORECASE)

# --- dates --------------------------------------------------------------------------------------

_MONTHS = "January February March April May June July August September October November December".split()
_MONTH_OF = {m.lower(): m.lower() for m in _MONTHS} | {
    m.lower()[:3]: m.lower() for m in _MONTHS if m != "May"
}
_MONTH_OF["sept"] = "september"
_MONTH = r"({})\b\.?".format("|".join([*_MONTHS, *(m[:3] for m in _MONTHS if m != "May"), "Sept"]))
_ORD = r"(?:st|nd|rd|th)?"
_DAY_MONTH = re.compile(rf"(?<!\d)(\d{{1,2}}){_ORD}\s+(?:of\s+)?{_MONTH}(?:,?\s+(\d{{4}})(?!\d))?")
_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+(\d{{1,2}}){_ORD}(?!\d)(?:,?\s+(\d{{4}})(?!\d))?")
_MONTH_YEAR = re.compile(rf"\b{_MONTH}\s*,?\s+(\d{{4}})(?!\d)")

# --- names --------------------------------------------------------------------------------------

# U.S. / Jong-un / People's / COVID-19 / G20: a word starts with a letter.
_TOKEN = re.compile(r"(?:[^\W\d_]\.){2,}|[^\W\d_][^\W_]*(?:['-][^\W_]+)*")
# Words that open a sentence without being names; capitalised elsewhere they are names.
_OPENER_WORDS = """
    about above according additionally after afterwards again against all along also although
    among amid an another answer any around based because before below besides beyond both but
    by can certainly consequently could currently despite did do does during each either even
    eventually every few finally first following for furthermore further given here hence
    however if in including indeed initially instead into is it it's last later let like many
    meanwhile might more moreover most much must neither nevertheless next no none nonetheless
    nor not note now once only other others our over overall please previously rather recently
    regarding second several she should similarly since so some specifically still subsequently
    such summary sure that's there's therefore though through throughout thus today together
    toward towards under unlike until upon via was we well were whereas whether while will
    within without would yes yet
"""
_OPENERS = STOPWORDS | frozenset(_OPENER_WORDS.split()) | frozenset([*_NUMBER_WORDS, "hundred", *_SCALES])
# What may follow a name in another form of it: Korea-n, Iran-ian, Japan-ese, Korea-s, German-y.
_NAME_ENDINGS = frozenset({"", "n", "an", "ian", "ese", "s", "es", "ns", "ans", "ians", "i", "is", "y"})
# Small words inside a name ("Bank of Korea"), left out of its initials. Not "and": "the U.S.
# and North Korea" are two names.
_CONNECTORS = frozenset({"of", "the", "for", "on", "de", "du", "la", "al", "von", "van"})


@dataclass(frozen=True)
class Facts:
    """What a claim states that a paraphrase must keep: ``numbers`` by value (scaled: "$60
    billion" is 6E+10) and ``dates`` by (month, "day" | "year", number), each with the claim's
    text for it, and ``names``, runs of capitalised words as written."""

    numbers: dict[Decimal, str]
    dates: dict[tuple[str, str, int], str]
    names: list[list[str]]


def claim_facts(claim: str) -> Facts:
    """The numbers, dates and names ``claim`` states.

    >>> f = claim_facts("On 21 October 1994, the U.S. and North Korea's KIM Jong Il signed it [1].")
    >>> sorted(f.numbers.values()), sorted(f.dates.values())
    (['1994', '21'], ['21 October 1994', 'October 1994'])
    >>> f.names
    [['October'], ['U.S.'], ['North', "Korea's", 'KIM', 'Jong', 'Il']]
    """
    # "1. The FATF...": a list's numbering is not a figure.
    text = _ENUMERATOR.sub("", _plain(strip_markers(claim)))
    numbers = {v: shown for v, shown in _numbers(text, claim=True)}
    dates = {key: shown for key, shown in _dates(text)}
    return Facts(numbers, dates, _name_runs(text))


def missing_facts(claim: str, passages: Sequence[Passage]) -> list[str]:
    """The numbers, dates and names of ``claim`` that no passage of ``passages`` holds, as the
    claim writes them (empty: every fact is there).

    >>> p = Passage("c1", "Sony Pictures said the hack cost $15 million.", {"title": "Hack"}, 0.5)
    >>> missing_facts("The North Korean hack of Sony Pictures cost the company $60 billion.", [p])
    ['$60 billion', 'North Korean']
    >>> missing_facts("Sony's hack cost it 15 million dollars.", [p])
    []
    """
    facts = claim_facts(claim)
    haystack = _plain("\n".join(f"{p.title}\n{p.section}\n{p.text}" for p in passages))
    values = {v for v, _ in _numbers(haystack, claim=False)}
    values |= _year_range_ends(haystack)
    dates = {key for key, _ in _dates(haystack)}
    words, acronyms = _vocabulary(haystack)
    missing = [shown for v, shown in facts.numbers.items() if v not in values]
    missing += [shown for key, shown in facts.dates.items() if key not in dates]
    for run in facts.names:
        absent = [w for w in run if w.lower() not in _CONNECTORS and not _word_found(w, words, acronyms)]
        # "International Emergency Economic Powers Act" where the passage writes "IEEPA".
        if absent and _initials(run) not in words:
            missing.append(" ".join(absent))
    return missing


def strict(verifier: Verifier) -> Verifier:
    """``verifier``, except that a claim whose numbers, dates or names the cited passages do not
    hold is unsupported (False) without asking it.

    >>> from rag.answering.verification import verify_by_match
    >>> p = Passage("c1", "The FATF had 16 members in 1991.", {"title": "FATF"}, 0.5)
    >>> verify = strict(verify_by_match)
    >>> verify("The FATF had 16 members in 1991 [1].", [p]), verify("It had 9 members in 1991 [1].", [p])
    (True, False)
    """

    def verify(claim: str, passages: Sequence[Passage]) -> bool | None:
        if passages and missing_facts(claim, passages):
            return False
        return verifier(claim, passages)

    return verify


# --- reading a text -----------------------------------------------------------------------------


_PUNCTUATION = str.maketrans({"’": "'", "‘": "'", "‐": "-", "‑": "-", "–": "-", "—": " - ", "−": "-"})


def _plain(text: str) -> str:
    """NFKC, one kind of apostrophe and dash, no markdown emphasis, accents dropped."""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_PUNCTUATION)
    text = re.sub(r"[*_`#]+", " ", text)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _numbers(text: str, *, claim: bool) -> Iterator[tuple[Decimal, str]]:
    """Every number of ``text`` as (value, as written). In a passage (``claim`` False) a scaled
    number counts unscaled too ("60 billion" backs a vaguer "60"), and so does a lone "one"."""
    for match in _DIGITS.finditer(text):
        if claim and _SELF_REFERENCE.search(text[: match.start()].rstrip("[( ")):
            continue
        whole, fraction = match.group(1).replace(",", ""), match.group(2)
        value = Decimal(f"{whole}.{fraction}" if fraction else whole)
        scale = _SCALE_AFTER.match(text, match.end())
        shown = text[max(match.start() - 1, 0) : match.end()].lstrip()
        shown = shown if shown[:1] in "$£€¥" else match.group(0)
        if scale:
            yield value * _SCALES[scale.group(1).lower()], f"{shown} {scale.group(1)}"
            if not claim:
                yield value, shown
        else:
            yield value, shown
    for match in _WORD_NUMBER.finditer(text):
        phrase = match.group(0).strip(" -")
        words = re.split(r"[\s-]+", phrase.lower())
        if words[0] == "hundred" or words[0] in _SCALES:
            continue  # "billion" after digits: read with them above; "a hundred": too vague
        if claim and len(words) == 1 and words[0] in _VAGUE_ALONE:
            continue  # "one of", "the first": not stated figures
        number, unscaled = _word_value(words)
        yield Decimal(number), phrase
        if not claim and unscaled != number:
            yield Decimal(unscaled), phrase


def _word_value(words: Sequence[str]) -> tuple[int, int]:
    """The value of number words ("twenty five" 25, "two hundred" 200, "nine million" 9000000)
    and the value before its first scale word (9 for "nine million").

    >>> _word_value(["sixteen"]), _word_value(["two", "hundred", "five"]), _word_value(["nine", "million"])
    ((16, 16), (205, 205), (9000000, 9))
    """
    total = current = 0
    unscaled: int | None = None
    for word in words:
        if word == "hundred":
            current = (current or 1) * 100
        elif word in _SCALES:
            if unscaled is None:
                unscaled = current or 1
            total += (current or 1) * _SCALES[word]
            current = 0
        else:
            current += _NUMBER_WORDS[word]
    return total + current, unscaled if unscaled is not None else total + current


def _year_range_ends(text: str) -> set[Decimal]:
    """The second years of ranges written short ("1950-53" holds 1953)."""
    return {Decimal(m.group(1) + m.group(3)) for m in _YEAR_RANGE.finditer(text)}


def _dates(text: str) -> Iterator[tuple[tuple[str, str, int], str]]:
    """Every (month, "day" | "year", number) a text pairs: "21 October 1994", "October 21, 1994",
    "October 1994", "21st of October"."""
    # The two orders differ only in which group holds the month and which the day.
    for pattern, month_at, day_at in ((_DAY_MONTH, 2, 1), (_MONTH_DAY, 1, 2)):
        for match in pattern.finditer(text):
            month = _MONTH_OF[match.group(month_at).lower()]
            day, year = int(match.group(day_at)), match.group(3)
            if 1 <= day <= 31:
                yield (month, "day", day), match.group(0)
            if year:
                yield (month, "year", int(year)), f"{match.group(month_at)} {year}"
    for match in _MONTH_YEAR.finditer(text):
        yield (_MONTH_OF[match.group(1).lower()], "year", int(match.group(2))), match.group(0)


def _name_runs(text: str) -> list[list[str]]:
    """The claim's names: runs of capitalised words ("North Korea's", "KIM Jong Il", "U.S."),
    small words inside one kept ("Bank of Korea").

    A word alone at the opening of a sentence is left out unless it cannot be a common word
    ("Membership grew..." and "Pyongyang is..." look alike without a dictionary): it counts with
    capitals inside (KIM, DePetris), as a possessive (Korea's) or capitalised again later.
    """
    names = []
    for run, opened in _runs(text, _is_name):
        word = run[0]
        if (
            len(run) == 1
            and opened
            and not (
                any(c.isupper() for c in word[1:])
                or re.search(r"'s?$", word)
                or len(re.findall(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", text)) > 1
            )
        ):
            continue
        names.append(run)
    return names


def _runs(text: str, is_name: Callable[[str, bool], bool]) -> Iterator[tuple[list[str], bool]]:
    """Runs of words ``is_name(word, opening)`` accepts, next to each other (small words inside a
    run kept; punctuation or a line break ends one), each with whether it opens a sentence."""
    run: list[str] = []
    opened = False
    pending: list[str] = []  # small words waiting to see whether the run goes on
    end = 0
    for match in _TOKEN.finditer(text):
        word, gap = match.group(0), text[end : match.start()]
        end = match.end()
        if run and (gap.strip() or "\n" in gap):
            yield run, opened
            run, pending = [], []
        opening = _opens(text, match.start())
        if is_name(word, opening):
            if not run:
                opened = opening
            run += [*pending, word]
            pending = []
        elif run and word.lower() in _CONNECTORS:
            pending.append(word)
        else:
            if run:
                yield run, opened
            run, pending = [], []
    if run:
        yield run, opened


def _opens(text: str, start: int) -> bool:
    """Whether the word at ``start`` opens a sentence (or a clause after a colon, or a list item)."""
    before = text[:start].rstrip(" \"'([")
    return not before or before[-1] in ".:;!?-\n"


def _is_name(word: str, opening: bool) -> bool:
    """Whether a claim's word is (part of) a name: capitalised and not a small word; at the
    opening of a sentence, not a common opener either ("However", "According", "Historically")."""
    if not word[:1].isupper() or word == "I":
        return False
    if len(word) > 1 and word.isupper():
        return True  # FATF, KIM, U.S.
    lower = word.lower()
    if lower in STOPWORDS:
        return False  # "The Diplomat": the name is the rest
    return not opening or not (lower in _OPENERS or (len(lower) > 5 and lower.endswith("ly")))


# --- looking a name up --------------------------------------------------------------------------


def _forms(word: str) -> tuple[str, list[str]]:
    """A word as names are compared: lowercase, no dots, no possessive; joined and in parts.

    >>> _forms("Korea's"), _forms("U.S."), _forms("Jong-un")
    (('korea', ['korea']), ('us', ['us']), ('jongun', ['jong', 'un']))
    """
    w = word.lower().replace(".", "")
    w = re.sub(r"'s?$", "", w)
    w = _MONTH_OF.get(w, w)
    parts = [p for p in re.split(r"['-]", w) if p]
    return "".join(parts), parts or [w]


def _vocabulary(text: str) -> tuple[set[str], set[str]]:
    """Every form a passage gives a word: whole and in parts, with its neighbour ("Jong Un" gives
    "jongun"); and the acronyms its capitalised names make ("Financial Action Task Force" gives
    "fatf", "The United States" "us"), which only a claim's acronym may match."""
    words: set[str] = set()
    previous = ""
    for match in _TOKEN.finditer(text):
        joined, parts = _forms(match.group(0))
        words.add(joined)
        words.update(parts)
        if previous:
            words.add(previous + joined)
        previous = joined
    acronyms: set[str] = set()
    for run, _ in _runs(text, lambda word, opening: word[:1].isupper()):
        for i in range(len(run)):
            for j in range(i + 2, min(len(run), i + 8) + 1):
                acronyms.add(_initials(run[i:j]))
    words.discard("")
    acronyms.discard("")
    return words, acronyms


def _initials(run: Sequence[str]) -> str:
    """``run``'s initials, small words left out ("Financial Action Task Force" -> "fatf")."""
    return "".join(w[0].lower() for w in run if w.lower() not in _CONNECTORS) if len(run) > 1 else ""


def _word_found(word: str, vocabulary: set[str], acronyms: set[str]) -> bool:
    """Whether a claim's name word is in a passage's vocabulary, by any of its forms, as the
    same name with another ending ("Korean" for "Korea", "Chinese" for "China"), or, an acronym,
    as the initials of a name the passage spells out."""
    joined, parts = _forms(word)
    if joined in vocabulary or all(p in vocabulary for p in parts):
        return True
    if word.isupper() and joined in acronyms:
        return True
    return any(_same_stem(joined, other) for other in vocabulary)


def _same_stem(a: str, b: str) -> bool:
    """Whether two words differ only by a short ending: Korea/Korean, Japan/Japanese,
    China/Chinese, Iran/Iranian, Germany/German, Koreas/Korea; never Iran/Iraq, Jong-un/Jong-il.

    >>> pairs = [("korea", "korean"), ("china", "chinese"), ("iran", "iraq"), ("jongun", "jongil")]
    >>> [_same_stem(*p) for p in pairs]
    [True, True, False, False]
    """
    short, long = sorted((a, b), key=len)
    if len(short) < 4 or not short.isalpha():
        return False
    if long.startswith(short) and long[len(short) :] in _NAME_ENDINGS:
        return True
    # China -> Chinese, Albania -> Albanian: the last vowel gives way to the ending.
    return short[-1] in "aeiouy" and long.startswith(short[:-1]) and long[len(short) - 1 :] in _NAME_ENDINGS
