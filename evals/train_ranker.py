"""Train the extractive answerer's sentence ranker (rag/answering/ranking.py) on the eval sets.

For every answerable question of the given sets, the question is retrieved the way the eval does
(the chain's own ranking, top 5 passages shown), and each candidate sentence gets the ranker's
features and a label: does it (with the sentence before it, when that comes along) hold one of
the question's key facts? A linear model is fitted listwise: one softmax over a question's
candidates, the key-fact sentences sharing the target. Before the final fit, each set is left
out in turn and the model trained on the others answers it, so the report says how the ranker
does on questions it was not trained on ("correct" as `rag eval` counts it, every key fact in
the answer, here over the answerable questions the chain does not refuse for relevance).

    python evals/train_ranker.py evals/golden.jsonl evals/heldout.jsonl ... \\
        --out rag/answering/sentence_ranker.json --report evals/ranker.md
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.runtime import offline_env  # noqa: E402

offline_env()

from rag.answering.extractive import Candidate, ExtractiveAnswerer  # noqa: E402
from rag.answering.ranking import FEATURES, SentenceRanker  # noqa: E402
from rag.text import normalise  # noqa: E402


@dataclass
class Question:
    set: str
    item: dict
    asked: str  # the question as the answerer gets it
    found: list[Candidate]
    features: np.ndarray
    passages: list  # the passages shown to the answerer
    refused_for_relevance: bool

    def labels(self) -> np.ndarray:
        return np.array([float(any(_holds(_text(c), g) for g in self.item["key_facts"])) for c in self.found])


def _text(c: Candidate) -> str:
    return normalise((c.before or "") + " " + c.shown)


def _holds(text: str, group: list[str]) -> bool:
    return any(normalise(alias) in text for alias in group)


def collect(paths: list[Path]) -> list[Question]:
    from rag.answering import open_assistant
    from rag.config import Settings
    from rag.index.embeddings import build_embeddings

    settings = Settings()
    embeddings = build_embeddings(settings)
    assistant = open_assistant(settings, embeddings=embeddings)
    answerer = ExtractiveAnswerer(embeddings)
    out = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            if item["type"] == "unanswerable":
                continue
            state = assistant.retrieve(item["question"], item.get("history") or [], k=10)
            found, features = answerer.features(state.question, state.shown)
            best = max((p.similarity for p in state.shown), default=-1.0)
            gated = best < settings.min_relevance and not (
                state.followup or any(p.named for p in state.shown)
            )
            out.append(Question(path.stem, item, state.question, found, features, list(state.shown), gated))
        print(f"{path.stem}: features of {sum(q.set == path.stem for q in out)} questions", file=sys.stderr)
    return out


def fit(questions: list[Question], l2: float = 1e-2) -> SentenceRanker:
    """Listwise logistic fit: per question, softmax over its candidates against the key-fact ones."""
    import torch

    groups = [(q.features, q.labels()) for q in questions if len(q.found)]
    groups = [(x, y) for x, y in groups if y.sum() > 0]
    stacked = np.vstack([x for x, _ in groups])
    mean, scale = stacked.mean(0), stacked.std(0) + 1e-6
    xs = [torch.tensor((x - mean) / scale, dtype=torch.float64) for x, _ in groups]
    ys = [torch.tensor(y / y.sum(), dtype=torch.float64) for _, y in groups]
    w = torch.zeros(len(FEATURES), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=300)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = sum(-(y * torch.log_softmax(x @ w, 0)).sum() for x, y in zip(xs, ys, strict=True))
        loss = loss / len(xs) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return SentenceRanker(
        mean=mean.astype(np.float32), scale=scale.astype(np.float32), weights=w.detach().numpy()
    )


def correct(questions: list[Question], pick: ExtractiveAnswerer) -> float:
    """Share of the questions whose picked sentences hold every key fact (refused: wrong)."""
    ok = 0
    for q in questions:
        if q.refused_for_relevance or not q.found:
            continue
        text = normalise(" ".join(s for _, s in pick.select(q.asked, q.passages)))
        ok += all(_holds(text, g) for g in q.item["key_facts"])
    return ok / max(len(questions), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "rag/answering/sentence_ranker.json")
    parser.add_argument("--report", type=Path, default=ROOT / "evals/ranker.md")
    args = parser.parse_args()
    questions = collect(args.sets)
    from rag.config import Settings
    from rag.index.embeddings import build_embeddings

    settings = Settings()
    embeddings = build_embeddings(settings)
    floor = settings.extractive_min_score
    base = ExtractiveAnswerer(embeddings, min_score=floor)
    names = [p.stem for p in args.sets]
    rows = []
    for held in names:
        train = [q for q in questions if q.set != held]
        test = [q for q in questions if q.set == held]
        ranked = ExtractiveAnswerer(embeddings, min_score=floor, ranker=fit(train))
        rows.append((held, len(test), correct(test, base), correct(test, ranked)))
        print(f"{held}: base {rows[-1][2]:.3f}, ranker trained without it {rows[-1][3]:.3f}", file=sys.stderr)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    final = fit(questions)
    final = SentenceRanker(final.mean, final.scale, final.weights, trained_on=f"{', '.join(names)} ({when})")
    final.save(args.out)
    lines = [
        "# Sentence ranker: trained on the eval sets, each measured left out",
        "",
        f"`python evals/train_ranker.py` on {when}. Correct = every key fact in the picked sentences,",
        "over the set's answerable questions (the relevance refusal counted wrong). \"Base\": today's",
        'base score and pick ratio; "ranker": trained on the other sets only, best 3 sentences.',
        "",
        "| set left out | answerable | base | ranker |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {n} | {b:.3f} | {r:.3f} |" for name, n, b, r in rows),
        "",
        "Weights of the final fit (all sets; features standardised):",
        "",
        "| feature | weight |",
        "|---|---:|",
        *(
            f"| {f} | {w:+.2f} |"
            for f, w in sorted(zip(FEATURES, final.weights, strict=True), key=lambda t: -abs(t[1]))
        ),
        "",
    ]
    args.report.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out} and {args.report}", file=sys.stderr)


if __name__ == "__main__":
    main()
