"""Every trained model a set of runs holds, as flat records: what tables, verdicts and plots read.

A lottery run folder (see ticketlab.store) holds the IMP rounds and, under branches/<name>/round_XX/, the control
experiments and the transfers that branch off it. Each round folder has metrics.json, mask.safetensors, COMPLETE.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import TicketlabError
from ..store import RunStore, split_metrics


@dataclass(frozen=True)
class Result:
    """One trained (sub)network and its metrics."""

    task: str  # the task it was trained and evaluated on
    model: str  # the base model (embedded name or path)
    seed: int
    arm: str  # "imp", "imp-rewind-<step>", a control's name (ticketlab.controls.CONTROLS) or "transfer"
    source: str | None  # transfer: the task the ticket was found on; otherwise None
    round: int  # IMP: the round; a branch: the round of the run its mask derives from
    level: float  # the nominal sparsity of the schedule level it stands for: what tables and plots group by
    sparsity: float  # the measured sparsity of its mask (a transferred ticket leaves a pooler it lacks dense)
    metrics: dict[str, dict[str, float]]  # split -> metric -> value
    mask: Path
    run: Path  # the lottery run folder


def collect(paths: Iterable[str | Path]) -> list[Result]:
    """Results of the complete rounds of every run in `paths`: run folders, or folders holding run folders."""
    results: list[Result] = []
    for run in _run_folders(paths):
        store = RunStore.open(run)
        config = store.config()
        arm = "imp" if config.prune.rewind_step == 0 else f"imp-rewind-{config.prune.rewind_step}"
        rounds = [(store, arm)] + [(store.branch(name), None) for name in store.branches()]
        for rounds_store, fixed_arm in rounds:
            for round in rounds_store.completed_rounds():
                record = rounds_store.metrics(round)
                if not fixed_arm and "arm" not in record:
                    raise TicketlabError(f"{rounds_store.round_dir(round)}/metrics.json names no arm")
                source = record.get("source")
                results.append(Result(
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
                ))
    return results


def _run_folders(paths: Iterable[str | Path]) -> list[Path]:
    folders: list[Path] = []
    for path in map(Path, paths):
        if (path / "config.json").is_file():
            folders.append(path)
        elif path.is_dir() and (found := sorted(p.parent for p in path.glob("*/config.json"))):
            folders.extend(found)
        else:
            raise TicketlabError(f"{path} is neither a ticketlab run folder nor a folder of runs")
    return folders
