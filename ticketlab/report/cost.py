"""The cost ledger in a report: for every trained subnetwork, the cost to find its ticket (the training of every unit
its mask depended on) and the cost to train it, in training FLOPs and seconds, and their total.

Every unit's record carries its ledger, `cost` (ticketlab.train.loop.TrainResult.cost): training FLOPs, an estimate of
the dense computation, and training seconds; an EarlyBERT ticket's record carries its search's ledger in `search`. What
a ticket's mask depended on is data: FINDING, per arm, a rule naming those units and the share of each that the ticket
bears; MASK_COST, per finder, what the masks of a run's rounds took. A new method states its dependencies there. Where a
ledger is missing (a unit stored before the ledger existed, a source run outside the reported ones, an arm without a
rule) the cost is NaN, never a guess.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from ..arms import (
    DENSE,
    EARLY_BIRD,
    EARLYBERT,
    EARLYBERT_RANDOM,
    GMP,
    IMP,
    IMP_REWIND,
    INVERTED,
    NOISE,
    ONE_SHOT,
    RANDOM,
    RANDOM_PER_MATRIX,
    REINIT,
    SHUFFLE,
    STRUCTURED_ARMS,
    TRANSFER,
    WANDA,
    arm_family,
    arm_label,
    arm_order,
    split_arm,
)
from ..store import RunStore
from ..store.records import GmpSearchRecord, RoundRecord, TeacherRecord
from .earlybert import branch_settings
from .results import Result, level_key

Ledger = Mapping[str, Any]  # a unit's record's cost
Spent = tuple[Ledger | None, float]  # a unit's ledger (None: unknown) and the share of it a ticket bears
MEASURES = {"flops": "train_flops", "s": "train_time_s"}  # a column's unit -> what it reads of the ledgers
KEYS = ["task", "model", "arm", "source", "settings", "level"]  # settings: EarlyBERT's; level: NaN for structured arms
COSTS = [f"{part}_{unit}" for unit in MEASURES for part in ("find", "train", "total")]
COLUMNS = [*KEYS, "sparsity", "n", *COSTS]
TEXT = """\
To find a ticket: the training of every unit its mask depended on; to train it: its own training; total: both, mean
over seeds. FLOPs estimate the dense computation (3 × the forward FLOPs counted on one batch × steps: pruned weights
are multiplied too); seconds are training time, evaluation excluded. — : a unit stored without its ledger.
- IMP at round r: rounds 0 … r−1 of the run (the dense round, then each round whose trained weights the next is
  pruned from); IMP with rewinding likewise. Early-bird IMP: the same rounds, each up to the step its draw of the
  next mask settled (the next round starts from that step's mask and task head: what a round trains after it does
  not count). Gradual magnitude pruning: its one pruning run (each round starts from the mask and task head the run
  had at its level). Wanda and one-shot magnitude pruning: the dense round (Wanda's calibration passes are not
  counted). Random pruning and the random structured ticket: nothing.
- random re-init, shuffled and noisy θ0: what the run's mask of that round took; inverted mask: what its mask at
  sparsity 1 − s took.
- transfer: what the source's ticket took, divided by the number of tasks it is transferred to in these runs.
- EarlyBERT: its search (from θ0: it needs no dense round).
- distilled arms: their training adds their teacher's forward passes: the dense round's outputs on the training
  split, computed once a run and counted in full in each ticket (FLOPs and seconds); MLM's, the dense model beside
  every step (FLOPs)."""


class Units:
    """The reported units' records, looked up the ways the rules need."""

    def __init__(self, results: list[Result]):
        self.records = {(r.run, r.branch, r.round): r.record for r in results}
        self.runs = {r.run.name.rpartition("_")[2]: r.run for r in results}  # a run's folder ends in its config hash
        self.imp_rounds = {(r.run, level_key(r)): r.round for r in results if r.branch is None}
        targets: dict[tuple[Path | None, int | None], set[str]] = defaultdict(set)
        for r in results:
            if r.arm == TRANSFER:
                targets[self.source(r)].add(r.task)
        self.targets = {ticket: len(tasks) for ticket, tasks in targets.items()}
        self.finders: dict[Path, str | None] = {}
        self.teachers: dict[Path, Ledger] = {}

    def source(self, result: Result) -> tuple[Path | None, int | None]:
        """The run (None: not among the reported ones) and the round a transferred ticket was found at, as its record
        names them (the run by its config hash)."""
        source = result.record.source or {}
        if "round" not in source:
            return None, None
        return self.runs.get(source.get("config_hash")), int(source["round"])

    def finder(self, run: Path) -> str | None:
        """How `run` drew its masks (ticketlab.lottery.finders); None where its settings are gone."""
        if run not in self.finders:
            settings = run / "config.json"
            self.finders[run] = RunStore(run).config().prune.finder if settings.is_file() else None
        return self.finders[run]

    def teacher_ledger(self, run: Path) -> Ledger:
        """The ledger of `run`'s teacher unit (ticketlab.lottery.teacher), read and verified once ({} where it has
        none: MLM's teacher runs beside each ticket)."""
        if run not in self.teachers:
            teachers = RunStore(run).teacher()
            if teachers.is_complete(0):
                teachers.verified(0)
            self.teachers[run] = TeacherRecord.from_json(teachers.metrics(0)).cost if teachers.is_complete(0) else {}
        return self.teachers[run]

    def mask_cost(self, run: Path | None, round: int | None, share: float = 1.0) -> list[Spent]:
        """What the mask of `run` at `round` took to find (MASK_COST of its finder), each unit with `share`."""
        finder = None if run is None else self.finder(run)
        if finder is None or round is None:
            return [(None, share)]
        return [(ledger, share * part) for ledger, part in MASK_COST[finder](self, run, round)]

    def imp_ledger(self, run: Path, round: int) -> Ledger | None:
        """The ledger of round `round` of `run` (a dense round the report reads another run's in place of, or an
        early-bird round that only drew a mask, is read from the store)."""
        record = self.record(run, round)
        return None if record is None else record.cost

    def record(self, run: Path, round: int) -> RoundRecord | None:
        """Round `round` of `run`'s record: the reported one, else the store's (None where it is not complete; its
        evaluation splits are not read)."""
        record = self.records.get((run, None, round))
        if record is None:
            store = RunStore(run)
            if not store.is_complete(round):
                return None
            store.verified(round)
            record = RoundRecord.from_json(store.metrics(round), splits=())
        return record


def _rounds_before(units: Units, run: Path, round: int) -> list[Spent]:
    """IMP: rounds 0 … `round` − 1, each pruned from the one before's trained weights."""
    return [(units.imp_ledger(run, k), 1.0) for k in range(round)]


def _drawn(units: Units, run: Path, round: int) -> list[Spent]:
    """Early-bird IMP: rounds 0 … `round` − 1 up to the step where each one's draw of the next mask settled."""
    spent = []
    for k in range(round):
        record = units.record(run, k)
        draw, steps = (record.draw or {}, record.trained.steps) if record else ({}, None)
        spent.append((record and record.cost, draw["step"] / steps if "step" in draw and steps else math.nan))
    return spent


def _dense_round(units: Units, run: Path, round: int) -> list[Spent]:
    """One-shot pruning (magnitude, Wanda) of the dense round's trained model."""
    return _rounds_before(units, run, min(round, 1))


def _pruning_run(units: Units, run: Path, round: int) -> list[Spent]:
    """Gradual magnitude pruning: its one pruning run."""
    if round == 0:
        return []
    searches = RunStore(run).searches()
    if not searches.is_complete(0):
        return [(None, 1.0)]
    searches.verified(0)
    return [(GmpSearchRecord.from_json(searches.metrics(0)).cost, 1.0)]


MASK_COST: dict[str, Callable[[Units, Path, int], list[Spent]]] = {  # a finder -> what its mask at a round took
    IMP: _rounds_before,
    EARLY_BIRD: _drawn,
    ONE_SHOT: _dense_round,
    WANDA: _dense_round,
    GMP: _pruning_run,
}

Rule = Callable[[Result, Units], list[Spent]]


def _run_mask(result: Result, units: Units) -> list[Spent]:
    return units.mask_cost(result.run, result.round)


def _dense(result: Result, units: Units) -> list[Spent]:
    return _dense_round(units, result.run, 1)


def _nothing(result: Result, units: Units) -> list[Spent]:
    return []


def _complement(result: Result, units: Units) -> list[Spent]:
    return units.mask_cost(result.run, units.imp_rounds.get((result.run, round(1 - result.level, 6))))


def _transferred(result: Result, units: Units) -> list[Spent]:
    run, found_at = units.source(result)
    return units.mask_cost(run, found_at, share=1 / units.targets[run, found_at])


def _search(result: Result, units: Units) -> list[Spent]:
    return [(result.record.search.cost if result.record.search else None, 1.0)]


FINDING: dict[str, Rule] = {  # an arm (ticketlab.arms.arm_family) -> what its mask depended on
    IMP: _run_mask,  # round r: pruned from round r-1's trained weights, and so back to the dense round 0
    IMP_REWIND: _run_mask,
    EARLY_BIRD: _run_mask,  # rounds 0 … r-1, each up to the step its draw settled
    GMP: _run_mask,  # the pruning run
    WANDA: _run_mask,  # the dense round
    ONE_SHOT: _dense,  # the dense round's trained weights, pruned once (the finder and the control alike)
    RANDOM: _nothing,
    RANDOM_PER_MATRIX: _nothing,
    REINIT: _run_mask,  # the run's mask of the same round
    SHUFFLE: _run_mask,
    NOISE: _run_mask,
    INVERTED: _complement,  # the run's mask at sparsity 1 - s
    TRANSFER: _transferred,  # the source run's ticket, shared among the tasks it is transferred to
    EARLYBERT: _search,  # its search, from θ0
    EARLYBERT_RANDOM: _nothing,  # random heads and neurons, in the ticket's counts: a baseline, as random pruning
}


def unit_costs(results: Iterable[Result]) -> pd.DataFrame:
    """One row per result, in their order: its KEYS, seed and measured sparsity, and its costs (COSTS) to find, to
    train and in total, in FLOPs and seconds."""
    results = list(results)
    units = Units(results)
    rows = []
    for r in results:
        rule = FINDING.get(arm_family(split_arm(r.arm)[0]))
        spent = rule(r, units) if rule else [(None, 1.0)]
        structured = r.arm in STRUCTURED_ARMS
        row = {
            "task": r.task,
            "model": r.model,
            "arm": r.arm,
            "source": r.source or "",
            "settings": branch_settings(r) if structured else "",
            "level": math.nan if structured else level_key(r),
            "seed": r.seed,
            "sparsity": r.sparsity,
        }
        teaching = _teaching(r, units)
        for unit, key in MEASURES.items():
            row[f"find_{unit}"] = sum(share * _measure(ledger, key) for ledger, share in spent)
            row[f"train_{unit}"] = _measure(r.record.cost, key) + teaching[unit]
            row[f"total_{unit}"] = row[f"find_{unit}"] + row[f"train_{unit}"]
        rows.append(row)
    return pd.DataFrame(rows, columns=[*KEYS, "seed", "sparsity", *COSTS])


def over_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Per KEYS, the mean over seeds of every other column but `seed` (NaN where a seed lacks it: a mean over fewer
    seeds would not compare with the others), and n, the number of seeds."""
    groups = frame.groupby(KEYS, dropna=False, sort=False)
    values = [column for column in frame.columns if column not in {*KEYS, "seed"}]
    means = groups[values].agg(lambda column: column.mean(skipna=False))
    return means.assign(n=groups.size()).reset_index()


def cost_table(results: Iterable[Result]) -> pd.DataFrame:
    """Per task, model, arm, source, settings and level (structured arms: NaN, their mean measured sparsity in
    `sparsity`): the mean over seeds of the costs to find, to train and in total (COSTS); n: the seeds."""
    table = over_seeds(unit_costs(results))
    order = sorted(
        range(len(table)),
        key=lambda i: (
            table.task[i],
            table.model[i],
            arm_order(table.arm[i], table.source[i]),
            table.settings[i],
            table.sparsity[i],
        ),
    )
    return table.iloc[order][COLUMNS].reset_index(drop=True)


def cost_views(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The cost table for display, one frame of strings per task: a row per subnetwork, FLOPs and seconds."""
    views = {}
    for task, rows in table.groupby("task", sort=False):
        view = pd.DataFrame(
            {
                "subnetwork": [_label(row) for row in rows.itertuples()],
                "sparsity": [f"{s if pd.isna(level) else level:.1%}" for level, s in zip(rows.level, rows.sparsity)],
                "seeds": rows.n.astype(str),
                **{
                    f"{part} ({'FLOPs' if unit == 'flops' else 's'})": [
                        _cell(value, unit) for value in rows[f"{part}_{unit}"]
                    ]
                    for unit in MEASURES
                    for part in ("find", "train", "total")
                },
            }
        )
        if rows.model.nunique() > 1:
            view.insert(0, "model", [Path(model).name for model in rows.model])
        views[task] = view
    return views


def _teaching(result: Result, units: Units) -> dict[str, float]:
    """What a distilled unit's teacher cost it, per MEASURES unit: the teacher FLOPs of its own ledger (MLM: the dense
    model beside every step) and the run's teacher unit's one pass over the training split (FLOPs and seconds),
    counted in full for each ticket, as one ticket alone would pay it; nothing for a unit trained without one."""
    own = result.record.cost
    if "teacher_flops" not in own:
        return {unit: 0.0 for unit in MEASURES}
    stored = units.teacher_ledger(result.run)
    return {"flops": own["teacher_flops"] + stored.get("teacher_flops", 0), "s": stored.get("eval_time_s", 0.0)}


def _measure(ledger: Ledger | None, key: str) -> float:
    return float(ledger[key]) if ledger is not None and key in ledger else math.nan


def _label(row) -> str:
    if row.arm == IMP and row.level == 0:
        return DENSE
    label = arm_label(row.arm, row.source or None)
    return f"{label} {row.settings}" if row.settings else label


def _cell(value: float, unit: str) -> str:
    if pd.isna(value):
        return "—"
    return f"{value:.3g}" if unit == "flops" else f"{value:.1f}"
