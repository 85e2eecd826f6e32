"""Fine-tuning the embedding model on the corpus's written questions (as GPL and InPars do).

Each question the local LLM wrote from a sentence gives two pairs: (question, the chunk that holds
the sentence, as the index embeds it) and (question, the sentence). One step embeds a batch of
pairs and asks each question to pick its own passages out of the batch (a softmax over the
cosines times ``SCALE``: sentence-transformers' MultipleNegativesRankingLoss, written out here
because its trainer would add the ``datasets`` and ``accelerate`` dependencies for this loop).
A question's other pair, or another question's copy of the same passage, is not counted as a
wrong pick.

Measured on the eval sets (docs/quality.md): the tuned model ranks at least as well as the
bundled one and gives passages that do not answer a question a lower cosine, so the relevance
threshold refuses many more on-topic questions the documents cannot answer. The learning rate is
half sentence-transformers' usual 2e-5: at 2e-5 answerable questions' cosines fell too, and the
unchanged threshold refused twice as many of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.index.embeddings import TUNED_RECORD

SCALE = 20.0  # inverse temperature of the softmax over cosines (sentence-transformers' default)
BATCH = 32
MAX_LENGTH = 256  # tokens; the chunks as embedded (heading path + about 900 characters) fit


def embedder_pairs(rows: Sequence[dict[str, Any]], chunk_texts: dict[str, str]) -> list[tuple[str, str]]:
    """(question, passage) pairs from written-question rows (``question``, ``sentence``,
    ``chunk_id``); ``chunk_texts`` maps chunk ids to the text the index embeds for them."""
    pairs: list[tuple[str, str]] = []
    for row in rows:
        question = str(row.get("question") or "").strip()
        if not question:
            continue
        chunk = chunk_texts.get(str(row.get("chunk_id")))
        if chunk:
            pairs.append((question, chunk))
        if row.get("sentence"):
            pairs.append((question, str(row["sentence"])))
    return pairs


def train_embedder(
    pairs: Sequence[tuple[str, str]],
    base_model: Path,
    out_dir: Path,
    record: dict[str, Any],
    *,
    epochs: int = 1,
    learning_rate: float = 1e-5,
    seed: int = 0,
    threads: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``base_model`` on ``pairs`` and save it in ``out_dir`` with ``record`` (plus the
    weights' hash, ``weights``) in its ``tuned.json``; returns the record written. The folder is
    replaced whole, so a process loading it never sees half a model. ``progress`` is told
    (step, steps, loss) after each step."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    from torch.nn import functional as nnf

    transformers.utils.logging.disable_progress_bar()  # the weight-loading bar is noise here
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = SentenceTransformer(str(base_model), device="cpu")
    model.max_seq_length = MAX_LENGTH
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    order = list(pairs)
    steps = epochs * -(-len(order) // BATCH)

    def embed(texts: list[str]) -> Any:
        features = model.preprocess(texts)
        return nnf.normalize(model(features)["sentence_embedding"], dim=-1)

    model.train()
    step = 0
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            questions = [q for q, _ in batch]
            passages = [p for _, p in batch]
            scores = embed(questions) @ embed(passages).T * SCALE
            # A question's own other passage, or the same passage under another question, is no
            # negative: mask it out of the softmax (the diagonal stays the target).
            same = torch.tensor(
                [[i != j and (questions[i] == questions[j] or passages[i] == passages[j])
                  for j in range(len(batch))] for i in range(len(batch))]
            )
            scores = scores.masked_fill(same, float("-inf"))
            loss = nnf.cross_entropy(scores, torch.arange(len(batch)))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if progress is not None:
                progress(step, steps, float(loss.detach()))
    model.eval()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".embedder-", dir=out_dir.parent))
    try:
        model.save(str(tmp))
        weights = hashlib.sha256()
        for name in sorted(os.listdir(tmp)):
            if name.endswith(".safetensors"):
                weights.update((tmp / name).read_bytes())
        written = {**record, "weights": weights.hexdigest()[:12], "pairs": len(pairs), "epochs": epochs}
        (tmp / TUNED_RECORD).write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written
