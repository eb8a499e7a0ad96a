"""Experiments: a recipe names the model, tasks, seeds, pruning, controls and transfer grid; one call runs it all.

Recipes are YAML files (ticketlab/recipes/); `--preset NAME` is ticketlab/recipes/NAME.yaml. Every part is a
lottery run, a branch of one, or a transfer, so re-running a recipe skips what is done and resumes the rest.
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
from .transfer import grid

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
        recipe = Recipe(name=path.stem, **{**raw, "tasks": {task: dict(options or {}) for task, options in raw["tasks"].items()}})
    except (KeyError, TypeError, AttributeError) as error:
        raise TicketlabError(f"{path}: a recipe needs `model` and a mapping `tasks` ({error})") from None
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


def run_experiment(
    recipe: Recipe, out: str | Path | None = None, seeds: int | None = None, model: str | None = None, checkpoint_every: int = 100
) -> Path:
    """Run every lottery run, control, rewinding run, EarlyBERT search and transfer of `recipe` (`model`, `seeds`:
    instead of the recipe's), then write the report; returns its folder."""
    if seeds is not None and seeds < 1:
        raise TicketlabError(f"seeds must be at least 1, got {seeds}")
    recipe = dataclasses.replace(recipe, model=model or recipe.model)
    out = Path(out or Path("runs") / recipe.name)
    seeds = range(seeds or recipe.seeds)
    settings = _earlybert_settings(recipe)
    data = {task: options["data"] for task, options in recipe.tasks.items() if options.get("data")}
    training = {task: {k: v for k, v in options.items() if k != "data"} for task, options in recipe.tasks.items()}
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
    return build_report([out])
