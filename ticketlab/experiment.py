"""Experiments: a recipe names the model, tasks, seeds, pruning, controls and transfer grid; one call runs it all.

Recipes are YAML files (ticketlab/recipes/); `--preset NAME` is ticketlab/recipes/NAME.yaml. Every part is a
lottery run, a branch of one, or a transfer, so re-running a recipe skips what is done and resumes the rest.

A recipe with `pretrain` (the CV paper's setting) first pre-trains its own models, one per method, then runs the
recipe on each: IMP on the method's pre-training task (universal tickets) and on every downstream task, and the
universal tickets of every sparsity transferred to every downstream task. Each method gets its own report.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import DistillConfig, PruneConfig, RunConfig, TrainConfig, check_types, from_options, resolve_precision
from .controls import CONTROLS
from .earlybert import EarlyBirdConfig, earlybert
from .errors import TicketlabError
from .executors import RayExecutor, Unit, run_units
from .lottery import find, grid_units, resolve_config, transfer
from .models import model_reference
from .pretraining.records import METHODS
from .pretraining.workflow import pretrain, pretraining_config
from .report.build import build_report
from .report.pretraining import write_pretraining_summary
from .tasks import TASKS
from .train import on_main_process

RECIPES = Path(__file__).parent / "recipes"


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but N:M (`granularity: 2:4`) stays a string: YAML 1.1 reads it as 124, in base 60."""


_RecipeLoader.yaml_implicit_resolvers = {
    first: [("tag:yaml.org,2002:str", re.compile(r"^[0-9]+:[0-9]+$")), *resolvers] if first.isdigit() else resolvers
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Recipe:
    """What an experiment runs. Per-task entries hold `data` and training options (TrainConfig fields)."""

    name: str
    model: str | None  # None: the models `pretrain` makes
    tasks: dict[str, dict[str, Any]]
    seeds: int = 1
    prune: dict[str, Any] = field(default_factory=dict)  # PruneConfig fields: sparsity, schedule, rate, ...
    controls: list[str] = field(default_factory=list)
    rewind_steps: list[int] = field(default_factory=list)  # extra IMP runs rewinding to these steps instead of θ0
    transfer: float | list[float] | None = (
        None  # the sparsity (or sparsities) of the transfer grid's tickets (None: no grid)
    )
    distill: dict[str, Any] | None = None  # DistillConfig fields ({} for its defaults; None: tickets not distilled)
    earlybert: dict[str, Any] | None = None  # EarlyBirdConfig fields ({} for EarlyBERT's defaults; None: no EarlyBERT)
    # architecture, methods (method -> TrainConfig fields of its pre-training) and tickets (TrainConfig fields of IMP on
    # the pre-training task); None: the recipe's `model` is pre-trained already
    pretrain: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        """Every setting checked, by type and value, before anything runs."""
        where = f"recipe {self.name}: "
        check_types(self, where)
        if self.model is None and self.pretrain is None:
            raise TicketlabError(f"{where}a recipe needs `model`, or `pretrain` to make its models")
        if not self.tasks:
            raise TicketlabError(f"{where}tasks names no task")
        for task, options in self.tasks.items():
            TASKS.get(task)
            if not isinstance(options.get("data") or "", str):
                raise TicketlabError(f"{where}tasks: {task}: data must be a path, got {options['data']!r}")
            training = {k: v for k, v in options.items() if k != "data"}
            if "precision" in training:
                training["precision"] = resolve_precision(training["precision"])
            from_options(TrainConfig, training, f"{where}tasks: {task}: ")
        if self.seeds < 1:
            raise TicketlabError(f"{where}seeds must be at least 1, got {self.seeds}")
        from_options(PruneConfig, self.prune, f"{where}prune: ")
        if self.distill is not None:
            from_options(DistillConfig, self.distill, f"{where}distill: ")
        for control in self.controls:
            CONTROLS.get(control)
        if any(step < 0 for step in self.rewind_steps):
            raise TicketlabError(f"{where}rewind_steps must be >= 0, got {self.rewind_steps}")
        if not all(0.0 < level < 1.0 for level in self.transfer_levels()):
            raise TicketlabError(f"{where}transfer is a sparsity in (0, 1) or a list of them, got {self.transfer!r}")
        _earlybert_settings(self)
        _pretrain_settings(self)

    def transfer_levels(self) -> list[float]:
        """The sparsities of the transfer grid's tickets."""
        return [] if self.transfer is None else self.transfer if isinstance(self.transfer, list) else [self.transfer]

    def with_absolute_paths(self) -> Recipe:
        """This recipe with its model folder and every data path absolute (embedded models, and tasks' own data, as
        they are): units on other nodes, or in other working folders, read the same files."""
        pretrain = self.pretrain
        if pretrain is not None:
            methods = {method: _absolute_data(options) for method, options in pretrain["methods"].items()}
            pretrain = {**pretrain, "methods": methods, "tickets": _absolute_data(pretrain.get("tickets"))}
        return dataclasses.replace(
            self,
            model=self.model and model_reference(self.model),
            tasks={task: _absolute_data(options) for task, options in self.tasks.items()},
            pretrain=pretrain,
        )


def _absolute_data(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """Options with their `data` path (if any) made absolute."""
    if not options or not options.get("data"):
        return options
    return {**options, "data": str(Path(options["data"]).resolve())}


def presets() -> list[str]:
    return sorted(path.stem for path in RECIPES.glob("*.yaml"))


def load_recipe(source: str | Path) -> Recipe:
    """A recipe from a YAML file, or a preset's name."""
    path = Path(source)
    if not path.is_file():
        if str(source) not in presets():
            raise TicketlabError(f"no recipe file or preset {str(source)!r}; presets: {', '.join(presets())}")
        path = RECIPES / f"{source}.yaml"
    try:
        raw = yaml.load(path.read_text(), _RecipeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise TicketlabError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise TicketlabError(f"{path}: a recipe is a mapping of settings")
    fields = {f.name for f in dataclasses.fields(Recipe)} - {"name"}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise TicketlabError(f"{path}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(fields))}")
    if not isinstance(raw.get("tasks"), dict):
        raise TicketlabError(f"{path}: a recipe needs `model` and a mapping `tasks`")
    tasks = {
        task: {} if options is None else options for task, options in raw["tasks"].items()
    }  # `task:` alone: no options
    return Recipe(name=path.stem, **{"model": None, **raw, "tasks": tasks})


def _earlybert_settings(recipe: Recipe) -> EarlyBirdConfig | None:
    """The recipe's EarlyBERT settings (None: it runs no EarlyBERT); a one-line error for unknown or bad ones."""
    if recipe.earlybert is None:
        return None
    return from_options(EarlyBirdConfig, recipe.earlybert, f"recipe {recipe.name}: earlybert: ")


def _pretrain_settings(recipe: Recipe) -> tuple[str, dict[str, dict[str, Any]], dict[str, Any]] | None:
    """The recipe's (architecture, method -> pre-training options, ticket options); a one-line error for bad ones."""
    if recipe.pretrain is None:
        return None
    unknown = sorted(set(recipe.pretrain) - {"architecture", "methods", "tickets"})
    if unknown:
        raise TicketlabError(
            f"recipe {recipe.name}: unknown pretrain setting {unknown[0]!r}; known: architecture, methods, tickets"
        )
    methods = recipe.pretrain.get("methods") or {}
    if not isinstance(methods, dict) or not methods:
        raise TicketlabError(
            f"recipe {recipe.name}: pretrain needs `methods`, a mapping of {', '.join(METHODS)} to their options"
        )
    where = f"recipe {recipe.name}: pretrain: "
    methods = {method: {} if options is None else options for method, options in methods.items()}
    tickets = recipe.pretrain.get("tickets") or {}
    architecture = recipe.pretrain.get("architecture", "resnet-small")
    for name, options in {**methods, "tickets": tickets}.items():
        if not isinstance(options, dict):
            raise TicketlabError(f"{where}{name} takes a mapping of training options, got {options!r}")
    try:  # `data`: the pre-training task's files, beside the training options
        for method, options in methods.items():
            pretraining_config(method, architecture, {k: v for k, v in options.items() if k != "data"})
        from_options(TrainConfig, {k: v for k, v in tickets.items() if k != "data"}, "tickets: ")
    except TicketlabError as error:
        raise TicketlabError(f"{where}{error}") from None
    return architecture, methods, tickets


def run_experiment(
    recipe: Recipe,
    out: str | Path | None = None,
    seeds: int | None = None,
    model: str | None = None,
    checkpoint_every: int = 100,
    executor: RayExecutor | None = None,
) -> Path:
    """Run every lottery run, control, rewinding run, EarlyBERT search and transfer of `recipe` (`model`, `seeds`:
    instead of the recipe's), here or with `executor`, then write the report; returns report.md (with pre-training:
    summary.md over the methods' reports)."""
    if seeds is not None and seeds < 1:
        raise TicketlabError(f"seeds must be at least 1, got {seeds}")
    out = Path(out or Path("runs") / recipe.name).resolve()  # absolute: workers on other nodes write there too
    seeds = range(seeds or recipe.seeds)
    recipe = dataclasses.replace(recipe, model=model or recipe.model).with_absolute_paths()  # read there too
    pretraining = _pretrain_settings(recipe)
    if pretraining is None or model is not None:
        recipe = dataclasses.replace(recipe, pretrain=None)
        run_units(recipe_units(recipe, out, seeds, checkpoint_every), executor)
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
) -> tuple[Path, Path]:
    """One pre-training method of a recipe, in this process: the model, its universal tickets transferred to every
    downstream task, and the recipe on it; returns the model folder and the folder of its runs (with its report)."""
    folder = pretrain(
        method, architecture=architecture, out=out / "pretrained", checkpoint_every=checkpoint_every, **options
    )
    source = METHODS[method][0]
    method_recipe = dataclasses.replace(
        recipe, model=str(folder.resolve()), tasks={source: ticket_options, **recipe.tasks}, pretrain=None
    )
    run_units(universal_units(method_recipe, source, out / method, seeds, checkpoint_every))
    run_units(recipe_units(method_recipe, out / method, seeds, checkpoint_every))
    on_main_process(lambda: build_report([out / method]))
    return folder, out / method


def _task_settings(recipe: Recipe) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Per task: its data (where given), and its training options."""
    data = {task: options["data"] for task, options in recipe.tasks.items() if options.get("data")}
    training = {task: {k: v for k, v in options.items() if k != "data"} for task, options in recipe.tasks.items()}
    return data, training


def _arguments(recipe: Recipe, task: str, seed: int, out: Path, checkpoint_every: int) -> dict[str, Any]:
    """What `find` takes for `task` of `recipe` with `seed` (`transfer` and `earlybert` take it too)."""
    data, training = _task_settings(recipe)
    return {
        "model": recipe.model,
        "task": task,
        "data": data.get(task),
        "out": out,
        "checkpoint_every": checkpoint_every,
        **recipe.prune,
        **_distill_options(recipe),
        **training[task],
        "seed": seed,
    }


def _run_config(recipe: Recipe, task: str, **options: Any) -> RunConfig:
    """The settings of `task`'s lottery run in `recipe` (`options`: its seed, a rewinding step), checked: the task's
    model, data and options."""
    data, training = _task_settings(recipe)
    prune = {k: v for k, v in recipe.prune.items() if k != "sparsity"}
    sparsity = recipe.prune.get("sparsity", PruneConfig.sparsity)
    options = {**prune, **_distill_options(recipe), **training[task], **options}
    return resolve_config(recipe.model, task, data.get(task), sparsity, **options)


def _distill_options(recipe: Recipe) -> dict[str, Any]:
    """The options `find` takes for the recipe's `distill:` ({} where it has none)."""
    if recipe.distill is None:
        return {}
    return {"distill": True, **{f"distill_{name}": value for name, value in recipe.distill.items()}}


def universal_units(recipe: Recipe, source: str, out: Path, seeds: range, checkpoint_every: int) -> list[Unit]:
    """IMP on the pre-training task `source`, and its ticket of every sparsity transferred to every other task."""
    units = []
    for seed in seeds:
        config = _run_config(recipe, source, seed=seed)
        found = Unit(
            f"find {source} seed {seed}",
            find,
            _arguments(recipe, source, seed, out, checkpoint_every),
            out / config.name(),
        )
        units.append(found)
        targets = {task: _run_config(recipe, task, seed=seed) for task in recipe.tasks if task != source}
        for round in range(1, len(config.prune.levels())):
            for task, target in targets.items():
                units.append(
                    Unit(
                        f"transfer {source} round {round} to {task} seed {seed}",
                        transfer,
                        {"ticket": f"{found.folder}:{round}", **_arguments(recipe, task, seed, out, checkpoint_every)},
                        out / target.name(),
                        after=(found.name,),
                    )
                )
    return units


def recipe_units(recipe: Recipe, out: Path, seeds: range, checkpoint_every: int) -> list[Unit]:
    """Every lottery run, control, rewinding run, EarlyBERT search and transfer grid of `recipe`, as units in the
    order one process runs them; every task's model, data and options are checked as they are listed."""
    settings = _earlybert_settings(recipe)
    units: list[Unit] = []
    for seed in seeds:
        for task in recipe.tasks:
            arguments = _arguments(recipe, task, seed, out, checkpoint_every)
            folder = out / _run_config(recipe, task, seed=seed).name()
            imp = Unit(f"find {task} seed {seed}", find, arguments, folder)
            units.append(imp)
            for control in recipe.controls:
                units.append(
                    Unit(
                        f"{control} {task} seed {seed}",
                        find,
                        {**arguments, "controls": [control]},
                        folder,
                        after=(imp.name,),
                    )
                )
            for step in recipe.rewind_steps:
                units.append(
                    Unit(
                        f"find {task} rewinding to step {step} seed {seed}",
                        find,
                        {**arguments, "rewind_step": step},
                        out / _run_config(recipe, task, seed=seed, rewind_step=step).name(),
                    )
                )
            if settings is not None:  # beside IMP, in the same run: they share the dense round 0
                units.append(
                    Unit(
                        f"earlybert {task} seed {seed}",
                        earlybert,
                        {**arguments, "settings": settings},
                        folder,
                        after=(imp.name,),
                    )
                )
    data, training = _task_settings(recipe)
    prune = {k: v for k, v in recipe.prune.items() if k != "sparsity"}
    for level in recipe.transfer_levels() if len(recipe.tasks) > 1 else []:
        units += grid_units(
            list(recipe.tasks),
            level,
            model=recipe.model,
            seeds=seeds,
            out=out,
            data=data,
            task_options=training,
            checkpoint_every=checkpoint_every,
            **{**prune, "sparsity": recipe.prune.get("sparsity")},  # None: IMP to the grid's level
        )
    return units
