"""What every task gives the training loop: splits, encoding, metrics and a default recipe."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..config import TrainConfig


class Task(ABC):
    """A downstream task. Subclasses set the class attributes and implement the three methods."""

    name: str
    description: str
    metric: str  # the metric that decides whether a subnetwork matches the dense model
    num_labels: int
    auto_class: type  # the transformers Auto* class that adds this task's head
    recipe: TrainConfig  # default hyperparameters, each overridable from the command line

    @abstractmethod
    def splits(self, data: str | None) -> dict[str, list[Any]]:
        """Examples of "train", "dev" and "test" (where there is one); `data` overrides the default files."""

    @abstractmethod
    def encode(self, tokenizer, examples: list[Any], max_length: int) -> list[dict]:
        """Tokenized features (unpadded), with "labels"."""

    @abstractmethod
    def metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Every standard metric of the task; includes `self.metric`."""
