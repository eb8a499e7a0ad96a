"""Recipes: what an experiment runs, read from YAML (ticketlab/recipes/ holds the presets) and checked, by type and
value, before anything runs."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .catalog import RECIPES, presets
from .config import DistillConfig, PruneConfig, TrainConfig, check_types, from_options, resolve_precision
from .controls import CONTROLS
from .earlybert import EarlyBirdConfig
from .errors import TicketlabError
from .lottery.imp import control_rounds
from .models import model_reference
from .pretrain import PRETRAINING_METHODS, pretraining_config
from .tasks import TASKS


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
    controls_at: list[float] | None = None  # the sparsities the controls run at (None: every pruned round's)
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
        if self.controls_at is not None:
            if not self.controls:
                raise TicketlabError(f"{where}controls_at says where the controls run, and the recipe names none")
            levels = from_options(PruneConfig, self.prune, f"{where}prune: ").levels()
            try:
                control_rounds(levels, self.controls_at)
            except TicketlabError as error:
                raise TicketlabError(f"{where}{error}") from None
        if any(step < 0 for step in self.rewind_steps):
            raise TicketlabError(f"{where}rewind_steps must be >= 0, got {self.rewind_steps}")
        if not all(0.0 < level < 1.0 for level in self.transfer_levels()):
            raise TicketlabError(f"{where}transfer is a sparsity in (0, 1) or a list of them, got {self.transfer!r}")
        self.earlybert_settings()
        self.pretraining()

    def transfer_levels(self) -> list[float]:
        """The sparsities of the transfer grid's tickets."""
        return [] if self.transfer is None else self.transfer if isinstance(self.transfer, list) else [self.transfer]

    def task_data(self) -> dict[str, str]:
        """Per task: its data files, where the recipe gives them."""
        return {task: options["data"] for task, options in self.tasks.items() if options.get("data")}

    def task_training(self) -> dict[str, dict[str, Any]]:
        """Per task: its training options (TrainConfig fields)."""
        return {task: {k: v for k, v in options.items() if k != "data"} for task, options in self.tasks.items()}

    def task_options(self, task: str) -> dict[str, Any]:
        """What `find` takes for `task` beside the model, the store and the seed: its data, the pruning, the
        distillation and its training options."""
        distill = (
            {} if self.distill is None else {"distill": True, **{f"distill_{k}": v for k, v in self.distill.items()}}
        )
        return {"data": self.task_data().get(task), **self.prune, **distill, **self.task_training()[task]}

    def earlybert_settings(self) -> EarlyBirdConfig | None:
        """The recipe's EarlyBERT settings (None: it runs no EarlyBERT); a one-line error for unknown or bad ones."""
        if self.earlybert is None:
            return None
        return from_options(EarlyBirdConfig, self.earlybert, f"recipe {self.name}: earlybert: ")

    def pretraining(self) -> tuple[str, dict[str, dict[str, Any]], dict[str, Any]] | None:
        """The recipe's (architecture, method -> pre-training options, ticket options) (None: it pre-trains nothing);
        a one-line error for bad ones."""
        if self.pretrain is None:
            return None
        unknown = sorted(set(self.pretrain) - {"architecture", "methods", "tickets"})
        if unknown:
            raise TicketlabError(
                f"recipe {self.name}: unknown pretrain setting {unknown[0]!r}; known: architecture, methods, tickets"
            )
        methods = self.pretrain.get("methods") or {}
        if not isinstance(methods, dict) or not methods:
            raise TicketlabError(
                f"recipe {self.name}: pretrain needs `methods`, a mapping of {', '.join(PRETRAINING_METHODS)} to "
                "their options"
            )
        where = f"recipe {self.name}: pretrain: "
        methods = {method: {} if options is None else options for method, options in methods.items()}
        tickets = self.pretrain.get("tickets") or {}
        architecture = self.pretrain.get("architecture", "resnet-small")
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
