"""A run's data: its task, the examples and encoded features of every split, the collators, and scoring a model on an
evaluation split. All that evaluating a run's model needs (an export, the report), without the run's model state
(ticketlab.lottery.context)."""

from __future__ import annotations

from typing import Any

import torch

from ..config import RunConfig
from ..models import resolve_model
from ..train.evaluate import eval_batch_size, predict
from . import TASKS


class TaskData:
    """The task of `config`, its splits (the training split cut to `train_examples`) and their features, each split
    encoded when it is first used (scoring dev does not encode the training split)."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.task = TASKS.get(config.task)
        self.processor: Any = self.task.processor(resolve_model(config.model))  # a tokenizer, or an image format
        self.examples = self.task.splits(config.data)
        self.examples["train"] = self.examples["train"][: config.train.train_examples]
        self.features = _Encoded(self)
        self.train_collate = self.task.collator(self.processor, train=True)
        self.eval_collate = self.task.collator(self.processor, train=False)

    def evaluate(self, split: str, model: torch.nn.Module, precision: str | None = None) -> dict[str, float]:
        """Metrics of `model` on an evaluation split, in `precision` (default: the run's)."""
        features = self.features[split]
        batch = eval_batch_size(self.config.train.batch_size)
        precision = precision or self.config.train.precision
        outputs = predict(model, features, self.eval_collate, batch, self.task.outputs, self.task.forward, precision)
        return self.task.score(self.examples[split], features, outputs)


class _Encoded(dict):
    """The features of a TaskData's splits, by split name, each encoded on first use."""

    def __init__(self, data: TaskData):
        super().__init__()
        self.data = data

    def __missing__(self, split: str) -> list[dict]:
        data = self.data
        self[split] = data.task.encode(data.processor, data.examples[split], data.config.train.max_length)
        return self[split]
