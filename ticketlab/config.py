"""Frozen run settings; a stable hash of the resolved settings names the run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .pruning.schedules import sparsity_schedule


@dataclass(frozen=True)
class TrainConfig:
    """One fine-tuning run (one IMP round)."""

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 2e-5
    max_length: int = 128
    train_examples: int | None = None  # None: the whole training split
    seed: int = 0
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class PruneConfig:
    """How IMP prunes and rewinds between rounds (defaults: the BERT-tickets code)."""

    sparsity: float = 0.9  # the target
    method: str = "magnitude"
    schedule: str = "linear"  # linear: `rate` of the original weights per round; geometric: of the remaining
    rate: float = 0.1
    scope: str = "global"  # or "per-matrix"
    rewind_step: int = 0  # 0: rewind to the pre-trained weights θ0; i: to the weights after step i of round 0
    rewind_head: bool = False  # the paper's code keeps the task head's trained values across rounds

    def levels(self) -> list[float]:
        """Sparsity of every round, the dense round 0 first (raises on a bad target, rate or schedule)."""
        return sparsity_schedule(self.schedule, self.rate, self.sparsity)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a lottery run's results."""

    model: str  # embedded name or local directory
    model_hash: str  # fingerprint of the weights file: a changed model makes a new run
    task: str
    data: str | None
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        return cls(**{**raw, "train": TrainConfig(**raw["train"]), "prune": PruneConfig(**raw["prune"])})

    def hash(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def name(self) -> str:
        """Readable prefix plus hash, e.g. rotten-tomatoes_splade-tiny_linear-0.9_3f2a9c01de."""
        model = self.model.rstrip("/").split("/")[-1]
        return f"{self.task}_{model}_{self.prune.schedule}-{self.prune.sparsity:g}_{self.hash()}"
