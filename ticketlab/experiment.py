"""Experiments: a recipe names the model, tasks, seeds, pruning, controls and transfer grid; one call runs it all.

Recipes are YAML files (ticketlab/recipes/); `--preset NAME` is ticketlab/recipes/NAME.yaml. Every part is a
lottery run, a branch of one, or a transfer, so re-running a recipe skips what is done and resumes the rest.

A recipe with `pretrain` (the CV paper's setting) first pre-trains its own models, one per method, then runs the
recipe on each: IMP on the method's pre-training task (universal tickets) and on every downstream task, and the
universal tickets of every sparsity transferred to every downstream task. Each method gets its own report.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .controls import CONTROLS
from .earlybert import EarlyBirdConfig, earlybert
from .errors import TicketlabError
from .lottery import find
from .report.build import build_report
from .tasks import TASKS
from .pretrain import METHODS, pretrain
from .report.pretraining import write_pretraining_summary
from .transfer import grid, transfer

RECIPES = Path(__file__).parent / "recipes"


@dataclass(frozen=True)
class Recipe:
    """What an experiment runs. Per-task entries hold `data` and training options (TrainConfig fields)."""

    name: str
    model: str
    tasks: dict[str, dict[str, Any]]
    seeds: int = 1
    prune: dict[str, Any] = field(default_factory=dict)  # PruneConfig fields: sparsity, schedule, rate, ...
    controls: list[str] = field(default_factory=list)
    rewind_steps: list[int] = field(default_factory=list)  # extra IMP runs rewinding to these steps instead of θ0
    transfer: float | None = None  # the sparsity of the tickets in the transfer grid (None: no grid)
    earlybert: dict[str, Any] | None = None  # EarlyBirdConfig fields ({} for EarlyBERT's defaults; None: no EarlyBERT)
    # architecture, methods (method -> TrainConfig fields of its pre-training) and tickets (TrainConfig fields of IMP on
    # the pre-training task); None: the recipe's `model` is pre-trained already
    pretrain: dict[str, Any] | None = None


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
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise TicketlabError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise TicketlabError(f"{path}: a recipe is a mapping of settings")
    fields = {f.name for f in dataclasses.fields(Recipe)} - {"name"}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise TicketlabError(f"{path}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(fields))}")
    try:
        recipe = Recipe(name=path.stem, **{"model": None, **raw, "tasks": {task: dict(options or {}) for task, options in raw["tasks"].items()}})
    except (KeyError, TypeError, AttributeError) as error:
        raise TicketlabError(f"{path}: a recipe needs `model` and a mapping `tasks` ({error})") from None
    if recipe.model is None and recipe.pretrain is None:
        raise TicketlabError(f"{path}: a recipe needs `model`, or `pretrain` to make its models")
    _pretrain_settings(recipe)
    for task in recipe.tasks:
        TASKS.get(task)
    for control in recipe.controls:
        CONTROLS.get(control)
    if recipe.seeds < 1:
        raise TicketlabError(f"{path}: seeds must be at least 1, got {recipe.seeds}")
    _earlybert_settings(recipe)
    return recipe


def _earlybert_settings(recipe: Recipe) -> EarlyBirdConfig | None:
    """The recipe's EarlyBERT settings (None: it runs no EarlyBERT); a one-line error for unknown or bad ones."""
    if recipe.earlybert is None:
        return None
    try:
        return EarlyBirdConfig(**recipe.earlybert)
    except TypeError:
        known = ", ".join(f.name for f in dataclasses.fields(EarlyBirdConfig))
        raise TicketlabError(f"recipe {recipe.name}: earlybert takes a mapping of {known}") from None


def _pretrain_settings(recipe: Recipe) -> tuple[str, dict[str, dict[str, Any]], dict[str, Any]] | None:
    """The recipe's (architecture, method -> pre-training options, ticket options); a one-line error for bad ones."""
    if recipe.pretrain is None:
        return None
    unknown = sorted(set(recipe.pretrain) - {"architecture", "methods", "tickets"})
    if unknown:
        raise TicketlabError(f"recipe {recipe.name}: unknown pretrain setting {unknown[0]!r}; known: architecture, methods, tickets")
    methods = recipe.pretrain.get("methods") or {}
    if not isinstance(methods, dict) or not methods:
        raise TicketlabError(f"recipe {recipe.name}: pretrain needs `methods`, a mapping of {', '.join(METHODS)} to their options")
    for method in methods:
        if method not in METHODS:
            raise TicketlabError(f"recipe {recipe.name}: unknown pre-training method {method!r}; known: {', '.join(METHODS)}")
    architecture = recipe.pretrain.get("architecture", "resnet-small")
    return architecture, {m: dict(o or {}) for m, o in methods.items()}, dict(recipe.pretrain.get("tickets") or {})


def run_experiment(
    recipe: Recipe, out: str | Path | None = None, seeds: int | None = None, model: str | None = None, checkpoint_every: int = 100
) -> Path:
    """Run every lottery run, control, rewinding run, EarlyBERT search and transfer of `recipe` (`model`, `seeds`:
    instead of the recipe's), then write the report; returns report.md (with pre-training: summary.md over the
    methods' reports)."""
    if seeds is not None and seeds < 1:
        raise TicketlabError(f"seeds must be at least 1, got {seeds}")
    out = Path(out or Path("runs") / recipe.name)
    seeds = range(seeds or recipe.seeds)
    pretraining = _pretrain_settings(recipe)
    if pretraining is None or model is not None:
        return _run_recipe(dataclasses.replace(recipe, model=model or recipe.model, pretrain=None), out, seeds, checkpoint_every)
    architecture, methods, ticket_options = pretraining
    runs = {}
    for method, options in methods.items():
        folder = pretrain(method, architecture=architecture, out=out / "pretrained", checkpoint_every=checkpoint_every, **options)
        source = METHODS[method][0]
        tasks = {source: ticket_options, **recipe.tasks}
        method_recipe = dataclasses.replace(recipe, model=str(folder.resolve()), tasks=tasks, pretrain=None)
        _transfer_universal_tickets(method_recipe, source, out / method, seeds, checkpoint_every)
        _run_recipe(method_recipe, out / method, seeds, checkpoint_every)
        runs[method] = (folder, out / method)
    return write_pretraining_summary(runs, out)


def _task_settings(recipe: Recipe) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Per task: its data (where given), and its training options."""
    data = {task: options["data"] for task, options in recipe.tasks.items() if options.get("data")}
    training = {task: {k: v for k, v in options.items() if k != "data"} for task, options in recipe.tasks.items()}
    return data, training


def _transfer_universal_tickets(recipe: Recipe, source: str, out: Path, seeds: range, checkpoint_every: int) -> None:
    """IMP on the pre-training task `source`, and its ticket of every sparsity transferred to every other task."""
    data, training = _task_settings(recipe)
    for seed in seeds:
        found = find(model=recipe.model, task=source, data=data.get(source), out=out, checkpoint_every=checkpoint_every,
                     **{**recipe.prune, **training[source], "seed": seed})
        for round in range(1, len(found.rounds)):
            for task in recipe.tasks:
                if task != source:
                    transfer(f"{found.path}:{round}", task, model=recipe.model, data=data.get(task), out=out,
                             checkpoint_every=checkpoint_every, **{**recipe.prune, **training[task], "seed": seed})


def _run_recipe(recipe: Recipe, out: Path, seeds: range, checkpoint_every: int) -> Path:
    """Every lottery run, control, rewinding run, EarlyBERT search and transfer grid of `recipe`, then its report."""
    settings = _earlybert_settings(recipe)
    data, training = _task_settings(recipe)
    for seed in seeds:
        for task in recipe.tasks:
            options = {**recipe.prune, **training[task], "seed": seed}
            common = dict(model=recipe.model, task=task, data=data.get(task), out=out, checkpoint_every=checkpoint_every)
            find(**common, controls=recipe.controls, **options)
            for step in recipe.rewind_steps:
                find(**common, **{**options, "rewind_step": step})
            if settings is not None:  # beside IMP, in the same run: they share the dense round 0
                earlybert(**common, settings=settings, **options)
    if recipe.transfer is not None and len(recipe.tasks) > 1:
        prune = dict(recipe.prune)
        grid(list(recipe.tasks), recipe.transfer, model=recipe.model, seeds=seeds, sparsity=prune.pop("sparsity", None),
             out=out, data=data, task_options=training, checkpoint_every=checkpoint_every, **prune)
    return build_report([out]) / "report.md"
