"""Every trained model a set of runs holds, as flat records: what tables, verdicts and plots read.

A lottery run folder (see ticketlab.store) holds the IMP rounds and, under branches/<name>/round_XX/, the control
experiments, the transfers and the EarlyBERT tickets that branch off it. Each round folder has metrics.json,
mask.safetensors, COMPLETE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import TicketlabError
from ..store import RunStore, run_folders, split_metrics

# whole attention heads and FFN neurons removed (EarlyBERT): their sparsity is not a level of IMP's schedule
STRUCTURED_ARMS = frozenset({"earlybert", "earlybert-random"})


@dataclass(frozen=True)
class Result:
    """One trained (sub)network and its metrics."""

    task: str  # the task it was trained and evaluated on
    model: str  # the base model (embedded name or path)
    seed: int
    # "imp", "imp-rewind-<step>", a control's name (ticketlab.controls.CONTROLS), "transfer" or one of STRUCTURED_ARMS
    arm: str
    source: str | None  # transfer: the task the ticket was found on; otherwise None
    round: int  # IMP: the round; a branch: the round of the run its mask derives from
    level: float  # the nominal sparsity of the schedule level it stands for: what tables and plots group by
    sparsity: float  # the measured sparsity of its mask (a transferred ticket leaves a pooler it lacks dense)
    metrics: dict[str, dict[str, float]]  # split -> metric -> value
    mask: Path
    run: Path  # the lottery run folder
    branch: str | None = None  # the branch folder's name; None for the run's own rounds
    record: Mapping[str, Any] = field(default_factory=dict, repr=False)  # metrics.json as stored


def collect(paths: Iterable[str | Path]) -> list[Result]:
    """Results of the complete rounds of every run in `paths`: run folders, or folders holding run folders.
    A damaged round stops it with one line (the report never shows what a damaged file says)."""
    results: list[Result] = []
    for run in run_folders(paths):
        store = RunStore.open(run)
        config = store.config()
        arm = "imp" if config.prune.rewind_step == 0 else f"imp-rewind-{config.prune.rewind_step}"
        rounds = [(store, arm)] + [(store.branch(name), None) for name in store.branches()]
        for rounds_store, fixed_arm in rounds:
            for round in rounds_store.completed_rounds():
                rounds_store.verified(round)
                record = rounds_store.metrics(round)
                if not fixed_arm and "arm" not in record:
                    raise TicketlabError(f"{rounds_store.round_dir(round)}/metrics.json names no arm")
                source = record.get("source")
                results.append(
                    Result(
                        task=config.task,
                        model=config.model,
                        seed=config.train.seed,
                        arm=fixed_arm or record["arm"],
                        source=source["task"] if source else None,
                        round=round,
                        level=record.get("level", record["sparsity"]),
                        sparsity=record["sparsity"],
                        metrics=split_metrics(record),
                        mask=rounds_store.mask_path(round),
                        run=store.path,
                        branch=None if rounds_store is store else rounds_store.path.name,
                        record=record,
                    )
                )
    return results


def level_key(result: Result) -> float:
    """The level a result is grouped by: rounded to 1e-6, since 1 - s carries float noise."""
    return round(result.level, 6)


def is_dense(result: Result) -> bool:
    """IMP's round 0: the dense model of its seed, every comparison's baseline."""
    return result.arm == "imp" and level_key(result) == 0


def metric_value(result: Result, decider: tuple[str, str]) -> float | None:
    """The result's (split, metric) value, None where it has none."""
    split, metric = decider
    return result.metrics.get(split, {}).get(metric)


def by_seed(results: Iterable[Result], decider: tuple[str, str]) -> dict[int, float]:
    """A metric per seed (the mean where a seed has several results)."""
    values: dict[int, list[float]] = {}
    for r in results:
        if (value := metric_value(r, decider)) is not None:
            values.setdefault(r.seed, []).append(value)
    return {seed: float(np.mean(v)) for seed, v in values.items()}


def unstructured(results: Iterable[Result]) -> list[Result]:
    """The results whose sparsity is a level of the unstructured schedule: every arm but STRUCTURED_ARMS."""
    return [r for r in results if r.arm not in STRUCTURED_ARMS]
