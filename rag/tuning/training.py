"""Training the sentence reader: a cross-encoder initialised from the bundled MiniLM.

The bundled all-MiniLM-L6-v2 is a bi-encoder; its transformer, given a fresh one-logit head,
reads the question and a sentence together and scores whether the sentence answers it. 22M
parameters train on a few thousand questions in minutes on 2 CPU cores.

Each step takes whole groups (a question, its target sentence, its mined negatives) and adds two
losses: a softmax over the group with the target as the answer, which teaches ranking, and
binary cross-entropy on every pair, which keeps the logit an absolute "this answers" score that
a refusal threshold can use. Binary cross-entropy alone (sentence-transformers' ``fit``) sank to
the share of positives here (every pair near 0.1) on 2,500 pairs; the group softmax did not.
sentence-transformers has group losses, but only through its trainer, which would add the
``datasets`` and ``accelerate`` dependencies for this loop of twenty lines.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

from rag.tuning.pairs import Example

MAX_LENGTH = 96  # question + a sentence with its section path: longer is cut, rarely
GROUPS_PER_STEP = 3


def grouped(examples: Sequence[Example]) -> list[list[Example]]:
    """The examples of each question, its target first (as ``mine`` writes them)."""
    groups: dict[str, list[Example]] = {}
    for e in examples:
        groups.setdefault(e.group, []).append(e)
    return [g for g in groups.values() if g and g[0].label == 1.0 and len(g) > 1]


def train_reader(
    examples: Sequence[Example],
    base_model: Path,
    out_dir: Path,
    *,
    epochs: int = 2,
    learning_rate: float = 1e-4,
    seed: int = 0,
    threads: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Train on ``examples`` and save the reader in ``out_dir`` (returned). ``progress`` is told
    (step, steps, loss) after each step."""
    import torch
    from sentence_transformers import CrossEncoder
    from torch.nn import functional as nnf

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    encoder = CrossEncoder(str(base_model), num_labels=1, max_length=MAX_LENGTH, device="cpu")
    model, tokenizer = encoder.model, encoder.tokenizer
    groups = grouped(examples)
    steps = epochs * -(-len(groups) // GROUPS_PER_STEP)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    model.train()
    step = 0
    for _ in range(epochs):
        rng.shuffle(groups)
        for i in range(0, len(groups), GROUPS_PER_STEP):
            batch = groups[i : i + GROUPS_PER_STEP]
            pairs = [e for g in batch for e in g]
            encoded = tokenizer(
                [e.question for e in pairs], [e.text for e in pairs],
                padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt",
            )
            logits = model(**encoded).logits.squeeze(-1)
            labels = torch.tensor([e.label for e in pairs])
            ranking = []
            start = 0
            for g in batch:
                group = logits[start : start + len(g)].unsqueeze(0)
                ranking.append(nnf.cross_entropy(group, torch.tensor([0])))  # the target comes first
                start += len(g)
            loss = torch.stack(ranking).mean() + 0.5 * nnf.binary_cross_entropy_with_logits(logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            step += 1
            if progress is not None:
                progress(step, steps, float(loss.detach()))
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder.save(str(out_dir))
    return out_dir
