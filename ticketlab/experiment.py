"""Experiments: a recipe (ticketlab.recipe) names the model, tasks, seeds, pruning, controls and transfer grid; one
call runs its units (ticketlab.plan) and writes its report. Every part is a lottery run, a branch of one, or a
transfer, so re-running a recipe skips what is done and resumes the rest.

A recipe with `pretrain` (the CV paper's setting) first pre-trains its own models, one per method, then runs the
recipe on each: IMP on the method's pre-training task (universal tickets) and on every downstream task, and the
universal tickets of every sparsity transferred to every downstream task. Each method gets its own report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from .errors import TicketlabError
from .executors import RayExecutor, Unit, run_units
from .lottery import grid_run
from .plan import grid_units, recipe_units, universal_units
from .pretrain import PRETRAINING_METHODS, pretrain
from .recipe import Recipe
from .report.build import build_report
from .report.pretraining import write_pretraining_summary
from .train.launch import on_main_process


def run_experiment(
    recipe: Recipe,
    out: str | Path | None = None,
    seeds: int | None = None,
    model: str | None = None,
    checkpoint_every: int = 100,
    executor: RayExecutor | None = None,
    log_with: Sequence[str] = (),
) -> Path:
    """Run every lottery run, control, rewinding run, EarlyBERT search and transfer of `recipe` (`model`, `seeds`:
    instead of the recipe's), here or with `executor`, each unit logging to the trackers `log_with` names, then write
    the report; returns report.md (with pre-training: summary.md over the methods' reports)."""
    if seeds is not None and seeds < 1:
        raise TicketlabError(f"seeds must be at least 1, got {seeds}")
    out = Path(out or Path("runs") / recipe.name).resolve()  # absolute: workers on other nodes write there too
    seeds = range(seeds or recipe.seeds)
    recipe = dataclasses.replace(recipe, model=model or recipe.model).with_absolute_paths()  # read there too
    pretraining = recipe.pretraining()
    if pretraining is None or model is not None:
        recipe = dataclasses.replace(recipe, pretrain=None)
        run_units(recipe_units(recipe, out, seeds, checkpoint_every, log_with), executor)
        return on_main_process(lambda: build_report([out])) / "report.md"
    architecture, methods, ticket_options = pretraining
    units = [
        Unit(
            f"{method}: pre-training and its tickets",
            run_pretrained,
            dict(
                recipe=recipe,
                method=method,
                architecture=architecture,
                options=options,
                ticket_options=ticket_options,
                out=out,
                seeds=seeds,
                checkpoint_every=checkpoint_every,
                log_with=log_with,
            ),
            out / method,
        )
        for method, options in methods.items()
    ]
    made = run_units(units, executor)
    return on_main_process(
        lambda: write_pretraining_summary({method: made[unit.name] for method, unit in zip(methods, units)}, out)
    )


def run_pretrained(
    recipe: Recipe,
    method: str,
    architecture: str,
    options: dict[str, Any],
    ticket_options: dict[str, Any],
    out: Path,
    seeds: range,
    checkpoint_every: int,
    log_with: Sequence[str] = (),
) -> tuple[Path, Path]:
    """One pre-training method of a recipe, in this process: the model, its universal tickets transferred to every
    downstream task, and the recipe on it; returns the model folder and the folder of its runs (with its report)."""
    folder = pretrain(
        method,
        architecture=architecture,
        out=out / "pretrained",
        checkpoint_every=checkpoint_every,
        log_with=log_with,
        **options,
    )
    source = PRETRAINING_METHODS[method][0]
    method_recipe = dataclasses.replace(
        recipe, model=str(folder.resolve()), tasks={source: ticket_options, **recipe.tasks}, pretrain=None
    )
    run_units(universal_units(method_recipe, source, out / method, seeds, checkpoint_every, log_with))
    run_units(recipe_units(method_recipe, out / method, seeds, checkpoint_every, log_with))
    on_main_process(lambda: build_report([out / method]))
    return folder, out / method


def grid(tasks: Sequence[str], level: float, *, executor: RayExecutor | None = None, **options: Any) -> list[Path]:
    """Every source x target transfer of the IMP tickets at sparsity `level`, for each seed (here or with `executor`;
    `options` as ticketlab.plan.grid_units takes them); returns the lottery run folders."""
    units = grid_units(tasks, level, **options)
    run_units(units, executor)
    return [unit.folder for unit in units if unit.call is grid_run]
