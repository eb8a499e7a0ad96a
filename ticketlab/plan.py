"""The one planner: settings in, executor units out (ticketlab.executors), in the order one process runs them.

A Plan holds what the units of an experiment, a transfer grid or `find --seeds N` share: the model, the run store,
the checkpoint interval, the trackers they log to and each task's options (what `find` takes for it). Its methods list
the units of one seed: the lottery runs with their controls, rewinding runs and EarlyBERT searches; the universal
tickets transferred; the transfer grid. Every task's model, data and options are checked as its units are listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import PruneConfig, RunConfig
from .earlybert import EarlyBirdConfig, earlybert
from .errors import TicketlabError
from .executors import Unit
from .lottery import find, grid_run, resolve_config, transfer
from .models import model_reference
from .pruning import round_at
from .recipe import Recipe
from .train.tracking import check_trackers


@dataclass(frozen=True)
class Plan:
    """The settings units are made of. `tasks`: per task, the options `find` takes beside the model, the store, the
    checkpoint interval, the trackers (`log_with`) and the seed (data, sparsity, pruning, distillation, training)."""

    model: str
    out: Path
    tasks: Mapping[str, Mapping[str, Any]]
    checkpoint_every: int = 100
    log_with: Sequence[str] = ()

    def __post_init__(self) -> None:
        check_trackers(self.log_with)  # before any unit starts

    @classmethod
    def absolute(
        cls,
        model: str,
        out: str | Path,
        tasks: Mapping[str, Mapping[str, Any]],
        checkpoint_every: int = 100,
        log_with: Sequence[str] = (),
    ) -> Plan:
        """A plan naming its model folder, store and data files by absolute paths: a unit on another node, or in
        another working folder, reads and writes the same files."""
        tasks = {
            task: {**options, "data": options.get("data") and str(Path(options["data"]).resolve())}
            for task, options in tasks.items()
        }
        return cls(model_reference(model), Path(out).resolve(), tasks, checkpoint_every, tuple(log_with))

    def arguments(self, task: str, seed: int | None) -> dict[str, Any]:
        """What `find` takes for `task` with `seed` (`transfer` and `earlybert` take it too)."""
        base = {
            "model": self.model,
            "task": task,
            "out": self.out,
            "checkpoint_every": self.checkpoint_every,
            "log_with": self.log_with,
        }
        return {**base, **self.tasks[task], "seed": seed}

    def config(self, task: str, seed: int | None, **options: Any) -> RunConfig:
        """The settings of `task`'s lottery run with `seed` (`options`: a rewinding step), checked."""
        given = dict(self.tasks[task])
        data, sparsity = given.pop("data", None), given.pop("sparsity", PruneConfig.sparsity)
        return resolve_config(self.model, task, data, sparsity, **{**given, "seed": seed, **options})

    def folder(self, task: str, seed: int | None, **options: Any) -> Path:
        """The run folder of `task`'s lottery run with `seed` (`options`: a rewinding step)."""
        return self.out / self.config(task, seed, **options).name()

    def runs(self, task: str, seeds: Sequence[int | None]) -> list[Unit]:
        """`task`'s lottery run, with the controls its options name, for each seed (`find --seeds N`); each seed's run
        is a folder of its own, named as the unit runs."""
        return [Unit(f"find seed {seed}", find, self.arguments(task, seed), None) for seed in seeds]

    def lottery(
        self,
        task: str,
        seed: int,
        controls: Sequence[str] = (),
        rewind_steps: Sequence[int] = (),
        earlybert_settings: EarlyBirdConfig | None = None,
        controls_at: Sequence[float] | None = None,
    ) -> list[Unit]:
        """`task`'s IMP run with `seed`; each control after it (at every pruned round, or at the sparsities
        `controls_at` lists); a run rewinding to each step; an EarlyBERT search beside IMP (in the same run: they share
        the dense round 0)."""
        arguments = self.arguments(task, seed)
        folder = self.folder(task, seed)
        imp = Unit(f"find {task} seed {seed}", find, arguments, folder)
        units = [imp]
        for control in controls:
            units.append(
                Unit(
                    f"{control} {task} seed {seed}",
                    find,
                    {**arguments, "controls": [control], "controls_at": controls_at},
                    folder,
                    (imp.name,),
                )
            )
        for step in rewind_steps:
            units.append(
                Unit(
                    f"find {task} rewinding to step {step} seed {seed}",
                    find,
                    {**arguments, "rewind_step": step},
                    self.folder(task, seed, rewind_step=step),
                )
            )
        if earlybert_settings is not None:
            units.append(
                Unit(
                    f"earlybert {task} seed {seed}",
                    earlybert,
                    {**arguments, "settings": earlybert_settings},
                    folder,
                    (imp.name,),
                )
            )
        return units

    def universal(self, source: str, seed: int) -> list[Unit]:
        """IMP on the pre-training task `source` with `seed`, and its ticket of every sparsity transferred to every
        other task."""
        config = self.config(source, seed)
        found = Unit(f"find {source} seed {seed}", find, self.arguments(source, seed), self.out / config.name())
        targets = {task: self.folder(task, seed) for task in self.tasks if task != source}
        units = [found]
        for round in range(1, len(config.prune.levels())):
            for task, folder in targets.items():
                units.append(
                    Unit(
                        f"transfer {source} round {round} to {task} seed {seed}",
                        transfer,
                        {"ticket": f"{found.folder}:{round}", **self.arguments(task, seed)},
                        folder,
                        (found.name,),
                    )
                )
        return units

    def grid(self, level: float, seed: int) -> list[Unit]:
        """The transfer grid's units of `seed` at sparsity `level`: each task's lottery run with its random control,
        then each transfer, which waits for its source's run."""
        configs = {task: self.config(task, seed) for task in self.tasks}
        rounds = {task: _round_at(config, level) for task, config in configs.items()}
        found = {
            task: Unit(
                f"grid {task} at {level:g} seed {seed}",
                grid_run,
                dict(
                    config=config,
                    out=self.out,
                    round=rounds[task],
                    checkpoint_every=self.checkpoint_every,
                    log_with=self.log_with,
                ),
                self.out / config.name(),
            )
            for task, config in configs.items()
        }
        units = list(found.values())
        for source, source_config in configs.items():
            for task in self.tasks:
                if task != source:
                    units.append(
                        Unit(
                            f"transfer {source} to {task} at {level:g} seed {seed}",
                            transfer,
                            {
                                "ticket": f"{self.out / source_config.name()}:{rounds[source]}",
                                **self.arguments(task, seed),
                            },
                            found[task].folder,
                            (found[source].name,),
                        )
                    )
        return units


def grid_units(
    tasks: Sequence[str],
    level: float,
    *,
    model: str = "splade-tiny",
    seeds: Sequence[int] = (0,),
    sparsity: float | None = None,
    out: str | Path = "runs",
    data: Mapping[str, str] | None = None,
    task_options: Mapping[str, Mapping[str, Any]] | None = None,
    checkpoint_every: int = 100,
    log_with: Sequence[str] = (),
    **options: Any,
) -> list[Unit]:
    """Every source x target transfer of the IMP tickets at sparsity `level`, for each seed. Each task's lottery run
    (IMP to `sparsity`, default `level`; `options` and its `task_options`: its settings) comes first, with the random
    pruning control at `level` that the transfer matrix compares against; every unit logs to the trackers
    `log_with` names."""
    if len(set(tasks)) < 2:
        raise TicketlabError("a transfer grid needs at least two different tasks")
    data, task_options = data or {}, task_options or {}
    unknown = sorted((set(data) | set(task_options)) - set(tasks))
    if unknown:
        raise TicketlabError(f"data or options given for {unknown[0]!r}, which is not among the grid's tasks")
    target = level if sparsity is None else sparsity
    settings = {
        task: {"data": data.get(task), **options, **task_options.get(task, {}), "sparsity": target} for task in tasks
    }
    plan = Plan.absolute(model, out, settings, checkpoint_every, log_with)
    return [unit for seed in seeds for unit in plan.grid(level, seed)]


def recipe_units(
    recipe: Recipe, out: Path, seeds: Sequence[int], checkpoint_every: int, log_with: Sequence[str] = ()
) -> list[Unit]:
    """Every lottery run, control, rewinding run, EarlyBERT search and transfer grid of `recipe` (its paths absolute),
    as units in the order one process runs them, each logging to the trackers `log_with` names."""
    tasks = {task: recipe.task_options(task) for task in recipe.tasks}
    plan = Plan(recipe.model, out, tasks, checkpoint_every, tuple(log_with))
    settings = recipe.earlybert_settings()
    units = [
        unit
        for seed in seeds
        for task in recipe.tasks
        for unit in plan.lottery(task, seed, recipe.controls, recipe.rewind_steps, settings, recipe.controls_at)
    ]
    prune = {k: v for k, v in recipe.prune.items() if k != "sparsity"}
    for level in recipe.transfer_levels() if len(recipe.tasks) > 1 else []:
        units += grid_units(
            list(recipe.tasks),
            level,
            model=recipe.model,
            seeds=seeds,
            out=out,
            data=recipe.task_data(),
            task_options=recipe.task_training(),
            checkpoint_every=checkpoint_every,
            log_with=log_with,
            **{**prune, "sparsity": recipe.prune.get("sparsity")},  # None: IMP to the grid's level
        )
    return units


def universal_units(
    recipe: Recipe, source: str, out: Path, seeds: Sequence[int], checkpoint_every: int, log_with: Sequence[str] = ()
) -> list[Unit]:
    """IMP on the pre-training task `source` of `recipe` (its paths absolute), and its ticket of every sparsity
    transferred to every other task, for each seed (logging to the trackers `log_with` names)."""
    tasks = {task: recipe.task_options(task) for task in recipe.tasks}
    plan = Plan(recipe.model, out, tasks, checkpoint_every, tuple(log_with))
    return [unit for seed in seeds for unit in plan.universal(source, seed)]


def _round_at(config: RunConfig, level: float) -> int:
    """The round of `config`'s schedule at sparsity `level`; a one-line error where it has none."""
    levels = config.prune.levels()
    round = round_at(levels, level)
    if round is not None:
        return round
    raise TicketlabError(
        f"the pruning schedule ({config.prune.schedule}, rate {config.prune.rate:g}, to {config.prune.sparsity:g}) "
        f"has no round at sparsity {level:g}; its levels: {', '.join(f'{value:g}' for value in levels[1:])}"
    )
