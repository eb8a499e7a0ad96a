"""What every task gives the training loop: splits, encoding, batching, metrics and default recipes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from ..config import TrainConfig
from ..errors import TicketlabError
from ..models.text import load_tokenizer
from ..models.vision import is_resnet
from ..train.batches import Collate, Draws

SPLIT_SEED = 1234  # the seed of every task's fixed held-out split: it never moves with the training seed
BASE_HIDDEN_SIZE = 768  # models this wide or wider (BERT-base, -large) get the paper's recipe


def fixed_split(count: int, held: dict[str, float], source: object) -> dict[str, np.ndarray]:
    """Row indices of a task's fixed split (seed SPLIT_SEED): each held-out split in `held` its fraction of the `count`
    rows and at least one, taken in that order, the rest for training. Fewer rows than one a split is refused in one
    line naming `source`: no split may be empty (a tiny data set still gets one example a held-out split)."""
    if count < len(held) + 1:
        raise TicketlabError(
            f"{source}: {count} example(s); at least {len(held) + 1} are needed, one for training and one "
            f"for each of {', '.join(held)}"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    parts, start = {}, 0
    for name, fraction in held.items():
        size = max(1, round(fraction * count))
        parts[name], start = order[start : start + size], start + size
    return {"train": order[start:], **parts}


class Task(ABC):
    """A task: subclasses set the class attributes and implement `splits`, `encode` and `score`.

    Features are dicts of token lists; keys the model does not take (offsets, example ids) may ride along:
    `collator` drops them. A batch goes through the model by `forward`, in training and evaluation alike; in training
    it gets the step's draws for any data randomness (masks, views), which a resumed run, or a launch of any number
    of processes, draws again exactly.
    Evaluation keeps `outputs` of every batch (rows in feature order) and hands them to `score` together with
    the split's examples and features.
    """

    name: str
    description: str
    files: str  # what `--data` points at
    metrics: tuple[str, ...]  # every metric reported on each evaluation split
    metric: str  # the paper's metric that decides whether a subnetwork matches the dense model
    eval_splits: tuple[str, ...] = ("dev",)  # labelled evaluation splits; the first one decides matching
    num_labels: int = 2
    auto_class: type  # the transformers Auto* class that adds this task's head
    prune_defaults: dict[str, Any] = {}  # PruneConfig fields that differ from the BERT-tickets code's for this task
    recipe: TrainConfig  # the paper's hyperparameters, for BERT-base-size models
    min_batch_size: int = 1  # contrastive objectives compare the examples of a batch with each other
    distillation: str | None = "logits"  # how a ticket learns from the dense model (ticketlab.distillation.KINDS)
    small_recipe: TrainConfig  # for the small embedded models (hidden size under 768)

    def model_options(self, data: str | None = None) -> dict[str, Any]:
        """Keyword arguments for `auto_class.from_pretrained` (head size, problem type); `data` as for `splits`."""
        return {"num_labels": self.num_labels}

    def recipe_for(self, hidden_size: int) -> TrainConfig:
        return self.recipe if hidden_size >= BASE_HIDDEN_SIZE else self.small_recipe

    def check_batch(self, config: TrainConfig) -> None:
        """A one-line error for a batch this task cannot learn from."""
        if config.batch_size < self.min_batch_size:
            raise TicketlabError(
                f"task {self.name} compares the examples of a batch with each other: batch_size must be "
                f"at least {self.min_batch_size}, got {config.batch_size}"
            )

    @abstractmethod
    def splits(self, data: str | None) -> dict[str, list[Any]]:
        """Examples of "train" and of each of `eval_splits`; `data` overrides the default files."""

    def processor(self, model: Path) -> Any:
        """What `encode` and `collator` take to turn examples into the inputs of the model in folder `model`:
        its tokenizer (image tasks: the number of input channels it expects)."""
        if is_resnet(model):
            raise TicketlabError(f"task {self.name} is a text task; {model} holds a ResNet")
        tokenizer = load_tokenizer(model)
        if tokenizer.pad_token is None:
            raise TicketlabError(
                f"the tokenizer of {model} has no padding token, which task {self.name} needs to batch examples"
            )
        return tokenizer

    @abstractmethod
    def encode(self, tokenizer, examples: list[Any], max_length: int) -> list[dict]:
        """Tokenized features (unpadded), with the labels the model's loss takes."""

    def collator(self, tokenizer, train: bool) -> Collate:
        """Pads a list of features into a batch of tensors (`train`: for training, else for evaluation)."""
        return DataCollatorWithPadding(tokenizer)

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], draws: Draws | None = None) -> Any:
        """One batch through the model: an output with the `.loss` training takes and what `outputs` reads
        (`draws`: the data randomness of a training step; None in evaluation)."""
        return model(**batch)

    def outputs(self, output: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What evaluation keeps of one batch: tensors with one row per feature."""
        return {"logits": output.logits.float(), "labels": batch["labels"]}

    @abstractmethod
    def score(self, examples: list[Any], features: list[dict], outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Every metric in `metrics`, from the outputs of every feature of a split."""

    def decider(self, spec: str | None = None) -> tuple[str, str]:
        """(split, metric) that decides matching: `spec` is "METRIC" or "SPLIT/METRIC" (default: the paper's)."""
        split, _, metric = (spec or self.metric).rpartition("/")
        split = split or self.eval_splits[0]
        if split not in self.eval_splits:
            raise TicketlabError(
                f"task {self.name} has no evaluation split {split!r}; it has: {', '.join(self.eval_splits)}"
            )
        if metric not in self.metrics:
            raise TicketlabError(f"task {self.name} has no metric {metric!r}; it reports: {', '.join(self.metrics)}")
        return split, metric
