"""Every trained model a set of runs holds, as flat records: what tables, verdicts and plots read.

A lottery run folder (see ticketlab.store) holds the IMP rounds and, under branches/<name>/round_XX/, the control
experiments, the transfers and the EarlyBERT tickets that branch off it. Each round folder has metrics.json,
mask.safetensors, COMPLETE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..arms import DISTILLED, GRANULARITY_MARK, IMP, STRUCTURED_ARMS, rewind_arm
from ..config import RunConfig
from ..errors import TicketlabError
from ..pruning import WEIGHT
from ..store import RunStore, run_folders
from ..store.records import RoundRecord
from ..tasks import TASKS


@dataclass(frozen=True)
class Result:
    """One trained (sub)network and its metrics."""

    task: str  # the task it was trained and evaluated on
    model: str  # the base model (embedded name or path)
    seed: int
    # "imp", "imp-rewind-<step>", a control's name (ticketlab.controls.CONTROLS), "transfer" or one of STRUCTURED_ARMS,
    # maybe with a granularity after GRANULARITY_MARK (see `collect`)
    arm: str
    source: str | None  # transfer: the task the ticket was found on; otherwise None
    round: int  # IMP: the round; a branch: the round of the run its mask derives from
    level: float  # the nominal sparsity of the schedule level it stands for: what tables and plots group by
    sparsity: float  # the measured sparsity of its mask (a transferred ticket leaves a pooler it lacks dense)
    metrics: dict[str, dict[str, float]]  # split -> metric -> value
    mask: Path
    run: Path  # the lottery run folder
    record: RoundRecord = field(repr=False)  # its unit's record (metrics.json)
    branch: str | None = None  # the branch folder's name; None for the run's own rounds


def collect(paths: Iterable[str | Path]) -> list[Result]:
    """Results of the complete rounds of every run in `paths`: run folders, or folders holding run folders.
    A damaged round stops it with one line (the report never shows what a damaged file says).

    Where the runs differ in granularity, the arms of a run that prunes other than single weights carry its granularity
    ("imp · block:8x8", "random · 2:4"; not the structured ones); its dense round 0, the same model whatever the
    granularity, stands as IMP's dense round unless a weight-granular run (or one read before) holds that model. A run
    of another finder than IMP (ticketlab.lottery.finders) is read as its arm ("gmp", "wanda", ...), its dense round
    likewise only where no IMP run holds that model; early-bird's rounds that only drew the next mask are no tickets
    and are left out. The arms of a distilled run carry DISTILLED ("imp · distilled", "random · block:8x8 ·
    distilled"); its dense round 0, trained without distillation, is the same dense model as a plain run's, so
    matching is decided against the dense model trained without distillation either way."""
    runs = [(store, store.config()) for store in map(RunStore.open, run_folders(paths))]
    mixed = len({config.prune.granularity for _, config in runs}) > 1
    results: list[Result] = []
    dense: set[tuple] = set()  # the dense rounds read: (task, model, seed, arm)
    for store, config in sorted(runs, key=_imp_weight_runs_first):
        granularity = config.prune.granularity if mixed and config.prune.granularity != str(WEIGHT) else None
        marks = GRANULARITY_MARK.join(
            ([granularity] if granularity else []) + ([DISTILLED] if config.distill is not None else [])
        )
        dense_arm = rewind_arm(config.prune.rewind_step)
        arm = dense_arm if config.prune.finder == IMP else config.prune.finder
        dense_key = (config.task, config.model, config.train.seed, dense_arm)
        splits = TASKS.get(config.task).eval_splits
        rounds = [(store, arm)] + [(store.branch(name), None) for name in store.branches()]
        for rounds_store, fixed_arm in rounds:
            for round in rounds_store.completed_rounds():
                is_dense_round = rounds_store is store and round == 0
                if is_dense_round:
                    if (marks or config.prune.finder != IMP) and dense_key in dense:
                        continue
                    dense.add(dense_key)
                rounds_store.verified(round)
                record = RoundRecord.from_json(rounds_store.metrics(round), splits)
                if record.search_only:  # early-bird's round that only drew the next mask: no ticket
                    continue
                if not fixed_arm and record.arm is None:
                    raise TicketlabError(f"{rounds_store.round_dir(round)}/metrics.json names no arm")
                source = record.source
                name = fixed_arm or record.arm
                marked = marks and not is_dense_round and name not in STRUCTURED_ARMS
                name = dense_arm if is_dense_round else name
                results.append(
                    Result(
                        task=config.task,
                        model=config.model,
                        seed=config.train.seed,
                        arm=f"{name}{GRANULARITY_MARK}{marks}" if marked else name,
                        source=source["task"] if source else None,
                        round=round,
                        level=record.level,
                        sparsity=record.sparsity,
                        metrics=record.splits,
                        mask=rounds_store.mask_path(round),
                        run=store.path,
                        record=record,
                        branch=None if rounds_store is store else rounds_store.path.name,
                    )
                )
    return results


def _imp_weight_runs_first(run: tuple[RunStore, RunConfig]) -> tuple[bool, bool, bool]:
    """Sort key of runs: IMP's weight-granular runs without distillation first, their dense rounds standing for the
    others'."""
    prune = run[1].prune
    return prune.finder != IMP, prune.granularity != str(WEIGHT), run[1].distill is not None


def level_key(result: Result) -> float:
    """The level a result is grouped by: rounded to 1e-6, since 1 - s carries float noise."""
    return round(result.level, 6)


def is_dense(result: Result) -> bool:
    """IMP's round 0: the dense model of its seed, every comparison's baseline."""
    return result.arm == IMP and level_key(result) == 0


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
