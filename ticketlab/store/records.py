"""The typed records of the store's units, shared by the workflows that write them and the report that reads them.
Each is written as its unit's record file (metrics.json, search.json, pretrain.json) in the layout stores have always
had, and read back from it (old stores too): `to_json` and `from_json`.

    RoundRecord        a trained unit: a round of a run, a control, a transfer, an EarlyBERT ticket
    GmpSearchRecord    GMP's pruning run (search/round_00)
    EarlyBertSearch    EarlyBERT's search (branches/earlybert-<hash>/search)
    TeacherRecord      a distilled run's teacher outputs (teacher/round_00)

A pre-trained model's record (pretrain.json) is ticketlab.pretrain's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..arms import GMP_SEARCH

Ledger = dict[str, Any]  # what a unit spent (ticketlab.train.loop.TrainResult.cost; report.cost reads it)
Metrics = dict[str, dict[str, float]]  # split -> metric -> value


@dataclass(frozen=True)
class Trained:
    """What training a unit measured (ticketlab.lottery.context.RunContext.train_model): the evaluation splits'
    metrics are empty where a hook ended training early (early-bird's round that only drew the next mask)."""

    steps: int
    train_loss: float
    train_time_s: float | None  # over every attempt, as the wall time (None: a store older than its recording)
    wall_time_s: float | None  # with evaluation (likewise)
    splits: Metrics
    cost: Ledger


@dataclass(frozen=True)
class EarlyBertSearch:
    """EarlyBERT's search: its settings (ticketlab.earlybert.workflow.EarlyBirdConfig's fields, `draw_every` the
    interval it used), how long it trained, the draw that is its ticket, and every draw (ticketlab.pruning.settle.Draw's
    fields)."""

    settings: dict[str, Any]
    steps: int
    time_s: float
    draw_step: int
    early_bird: bool
    draws: list[dict[str, Any]]
    cost: Ledger

    def to_json(self) -> dict[str, Any]:
        return {**self.settings, **{name: getattr(self, name) for name in _OUTCOMES}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EarlyBertSearch:
        settings = {key: value for key, value in data.items() if key not in _OUTCOMES}
        outcomes = {name: data[name] for name in _OUTCOMES if name != "cost"}
        return cls(settings=settings, cost=data.get("cost", {}), **outcomes)  # stores older than the ledger lack it


_OUTCOMES = [f.name for f in dataclasses.fields(EarlyBertSearch) if f.name != "settings"]


@dataclass(frozen=True)
class RoundRecord:
    """A trained unit: which round it stands beside and at what level, what training it measured and spent, its
    metrics by evaluation split, and what its kind adds (an arm's name, a granularity, early-bird's draw, a transfer's
    source, an EarlyBERT ticket's structure and search)."""

    round: int
    level: float
    sparsity: float
    trained: Trained
    arm: str | None = None  # a branch's arm; None: the run's own round (its finder's arm)
    granularity: str | None = None  # the run's granularity, where it is not single weights
    nearly_empty: list[dict[str, Any]] | None = None  # the matrices its mask nearly empties
    draw: dict[str, Any] | None = None  # early-bird IMP: where the next round's draw settled
    search_only: bool = False  # early-bird IMP: the round only drew the next mask (no ticket)
    source: dict[str, Any] | None = None  # a transfer: task, round, config_hash and sparsity of its ticket
    structure: dict[str, Any] | None = None  # an EarlyBERT ticket: its heads and FFN neurons, its parameters
    search: EarlyBertSearch | None = None  # an EarlyBERT ticket: the search that found it
    dense_train_time_s: float | None = None  # an EarlyBERT ticket: its run's dense round's training time
    time_ratio: float | None = field(default=None, compare=False)  # ... and (search + training) / dense training

    @property
    def splits(self) -> Metrics:
        return self.trained.splits

    @property
    def cost(self) -> Ledger:
        return self.trained.cost

    def to_json(self) -> dict[str, Any]:
        trained = self.trained
        record: dict[str, Any] = {} if self.arm is None else {"arm": self.arm}
        record.update(round=self.round, level=self.level, sparsity=self.sparsity)
        if self.granularity is not None:
            record["granularity"] = self.granularity
        record.update(
            steps=trained.steps,
            train_loss=trained.train_loss,
            train_time_s=trained.train_time_s,
            wall_time_s=trained.wall_time_s,
            **trained.splits,
            cost=trained.cost,
        )
        optional = ("nearly_empty", "draw", "source", "structure", "dense_train_time_s")
        record.update({name: getattr(self, name) for name in optional if getattr(self, name) is not None})
        if self.search_only:
            record["search_only"] = True
        if self.search is not None:
            record["search"] = self.search.to_json()
        if self.structure is not None:
            record["time_ratio"] = self.time_ratio
        return record

    @classmethod
    def from_json(cls, data: Mapping[str, Any], splits: Sequence[str]) -> RoundRecord:
        """The record stored as `data` by a unit whose task evaluates on `splits` (a round that only drew a mask has
        none of them)."""
        trained = Trained(
            steps=data["steps"],
            train_loss=data["train_loss"],
            train_time_s=data.get("train_time_s"),
            wall_time_s=data.get("wall_time_s"),
            splits={split: data[split] for split in splits if split in data},
            cost=data.get("cost", {}),
        )
        search = data.get("search")
        return cls(
            round=data["round"],
            level=data.get("level", data["sparsity"]),
            sparsity=data["sparsity"],
            trained=trained,
            arm=data.get("arm"),
            granularity=data.get("granularity"),
            nearly_empty=data.get("nearly_empty"),
            draw=data.get("draw"),
            search_only=bool(data.get("search_only", False)),
            source=data.get("source"),
            structure=data.get("structure"),
            search=None if search is None else EarlyBertSearch.from_json(search),
            dense_train_time_s=data.get("dense_train_time_s"),
            time_ratio=data.get("time_ratio"),
        )


@dataclass(frozen=True)
class GmpSearchRecord:
    """GMP's pruning run: how long it trained, the sparsity it ended at and its schedule (step -> sparsity)."""

    steps: int
    train_loss: float
    train_time_s: float
    sparsity: float
    schedule: dict[str, float]
    cost: Ledger

    def to_json(self) -> dict[str, Any]:
        return {"round": 0, "arm": GMP_SEARCH, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GmpSearchRecord:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class TeacherRecord:
    """A distilled run's teacher unit: the kind of outputs it kept (ticketlab.distillation.KINDS) and its cost."""

    kind: str
    cost: Ledger

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TeacherRecord:
        return cls(kind=data["kind"], cost=data["cost"])
