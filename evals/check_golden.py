#!/usr/bin/env python3
"""Validate evals/golden.jsonl against the corpus.

Usage: python evals/check_golden.py [path/to/golden.jsonl] [path/to/corpus]

Errors (exit status 1):
  * a line is not valid JSON or not an object, or its fields are not exactly
    id, type, question, history, answer, key_facts, sources, evidence
  * duplicate or non-string id; unknown type; empty question/answer
  * history malformed (roles must be user/assistant, content non-empty);
    history must be non-empty for followups and empty otherwise
  * key_facts not a list of non-empty lists of non-empty lowercase strings
  * unanswerable items with non-empty key_facts/sources/evidence;
    answerable items with no sources or no key_facts
  * a source that is not a corpus file (SOURCES.md is not a corpus document)
  * len(evidence) != len(sources); evidence not an exact substring of its
    source file; evidence spanning a line break
  * a key-fact group with no alternative found (case-insensitively) in the
    concatenated evidence + reference answer
  * the reference answer itself failing its own key facts (the harness
    applies key_facts to answer texts, so the reference answer must pass)
  * type/source consistency: article -> only the Diplomat article;
    corpus -> exactly one non-article document; multi -> >= 2 distinct docs

Warnings (reported, do not fail): evidence outside 40-250 characters,
evidence containing markdown table pipes or invisible non-ASCII spaces
(NBSP / narrow NBSP, which the article and U.S. Code files contain).
"""
import json
import os
import sys
from collections import Counter

FIELDS = ["id", "type", "question", "history", "answer", "key_facts", "sources", "evidence"]
TYPES = ["article", "corpus", "multi", "unanswerable", "followup"]
ARTICLE = "the-diplomat-2016-why-should-the-us-talk-to-north-korea.md"
NOT_CORPUS = {"SOURCES.md"}

here = os.path.dirname(os.path.abspath(__file__))
golden_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "golden.jsonl")
corpus_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "corpus")

corpus = {}
for name in sorted(os.listdir(corpus_dir)):
    if name.endswith(".md") and name not in NOT_CORPUS:
        with open(os.path.join(corpus_dir, name), encoding="utf-8") as fh:
            corpus[name] = fh.read()

errors, warnings = [], []
counts = Counter()
seen_ids = set()


def err(where, msg):
    errors.append(f"{where}: {msg}")


def warn(where, msg):
    warnings.append(f"{where}: {msg}")


def groups_ok(groups, text):
    """Return the key-fact groups with no alternative in text (case-insensitive)."""
    low = text.lower()
    return [g for g in groups if not any(alt.lower() in low for alt in g)]


with open(golden_path, encoding="utf-8") as fh:
    lines = fh.read().splitlines()

n_items = 0
for lineno, line in enumerate(lines, 1):
    where = f"line {lineno}"
    if not line.strip():
        err(where, "blank line")
        continue
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        err(where, f"invalid JSON: {exc}")
        continue
    if not isinstance(item, dict):
        err(where, "not a JSON object")
        continue
    n_items += 1
    keys = list(item.keys())
    if set(keys) != set(FIELDS) or len(keys) != len(FIELDS):
        missing = sorted(set(FIELDS) - set(keys))
        extra = sorted(set(keys) - set(FIELDS))
        err(where, f"fields wrong (missing {missing}, extra {extra})")
        continue

    iid = item["id"]
    if not isinstance(iid, str) or not iid:
        err(where, "id must be a non-empty string")
    else:
        where = f"line {lineno} ({iid})"
        if iid in seen_ids:
            err(where, "duplicate id")
        seen_ids.add(iid)

    typ = item["type"]
    if typ not in TYPES:
        err(where, f"invalid type {typ!r}")
        continue
    counts[typ] += 1

    for field in ("question", "answer"):
        if not isinstance(item[field], str) or not item[field].strip():
            err(where, f"{field} must be a non-empty string")

    # history
    hist = item["history"]
    if not isinstance(hist, list):
        err(where, "history must be a list")
    else:
        for i, turn in enumerate(hist):
            if (not isinstance(turn, dict) or set(turn) != {"role", "content"}
                    or turn.get("role") not in ("user", "assistant")
                    or not isinstance(turn.get("content"), str) or not turn["content"].strip()):
                err(where, f"history[{i}] must be {{'role': 'user'|'assistant', 'content': str}}")
        if typ == "followup":
            if not hist:
                err(where, "followup needs a non-empty history")
            elif hist[0].get("role") != "user" or hist[-1].get("role") != "assistant":
                err(where, "followup history should start with user and end with assistant")
        elif hist:
            err(where, "history must be empty unless type is followup")

    # key facts
    kf = item["key_facts"]
    kf_ok = isinstance(kf, list) and all(
        isinstance(g, list) and g and all(isinstance(a, str) and a.strip() for a in g) for g in kf)
    if not kf_ok:
        err(where, "key_facts must be a list of non-empty lists of non-empty strings")
        kf = []
    for g in kf:
        for alt in g:
            if alt != alt.lower():
                err(where, f"key fact not lowercase: {alt!r}")

    sources, evidence = item["sources"], item["evidence"]
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        err(where, "sources must be a list of strings")
        continue
    if not isinstance(evidence, list) or not all(isinstance(e, str) for e in evidence):
        err(where, "evidence must be a list of strings")
        continue

    if typ == "unanswerable":
        if kf or sources or evidence:
            err(where, "unanswerable items must have empty key_facts, sources and evidence")
        continue

    if not sources:
        err(where, "answerable item needs at least one source")
    if not kf:
        err(where, "answerable item needs key_facts")
    if len(evidence) != len(sources):
        err(where, f"len(evidence)={len(evidence)} != len(sources)={len(sources)}")

    for i, src in enumerate(sources):
        if src in NOT_CORPUS or src not in corpus:
            err(where, f"source not in corpus: {src!r}")
            continue
        if i >= len(evidence):
            continue
        ev = evidence[i]
        if "\n" in ev:
            err(where, f"evidence[{i}] spans a line break")
        if ev not in corpus[src]:
            err(where, f"evidence[{i}] is not an exact substring of {src}: {ev[:80]!r}")
        if not 40 <= len(ev) <= 250:
            warn(where, f"evidence[{i}] length {len(ev)} outside 40-250: {ev!r}")
        if "|" in ev:
            warn(where, f"evidence[{i}] contains a table pipe")
        if any(ch in ev for ch in ("\u00a0", "\u202f", "\u2009", "\u200b")):
            warn(where, f"evidence[{i}] contains an invisible non-ASCII space (hard to copy/compare)")

    missing = groups_ok(kf, " \n".join(evidence) + " \n" + item["answer"])
    for g in missing:
        err(where, f"key-fact group {g} not found in evidence or reference answer")
    for g in groups_ok(kf, item["answer"]):
        err(where, f"reference answer fails its own key-fact group {g}")

    distinct = set(sources)
    if typ == "article" and sources != [ARTICLE]:
        err(where, f"article items must cite only {ARTICLE}")
    if typ == "corpus" and (len(sources) != 1 or ARTICLE in distinct):
        err(where, "corpus items must cite exactly one non-article document")
    if typ == "multi" and len(distinct) < 2:
        err(where, "multi items must cite at least two distinct documents")

print(f"{n_items} items in {golden_path}")
print("type counts: " + ", ".join(f"{t}={counts.get(t, 0)}" for t in TYPES))
cited = Counter(s for line in lines if line.strip()
                for s in (json.loads(line).get("sources", []) if line.strip().startswith("{") else []))
uncited = sorted(set(corpus) - set(cited))
print(f"corpus documents cited: {len(set(cited) & set(corpus))}/{len(corpus)}"
      + (f" (never cited: {', '.join(uncited)})" if uncited else ""))
for w in warnings:
    print("WARNING", w)
for e in errors:
    print("ERROR", e)
print(f"{len(errors)} error(s), {len(warnings)} warning(s)")
sys.exit(1 if errors else 0)
