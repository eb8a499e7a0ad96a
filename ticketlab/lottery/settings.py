"""A run's settings: the task's recipe and the pruning defaults filled in around the user's options, checked."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from ..catalog import FINDER_SETTINGS
from ..config import DistillConfig, PruneConfig, RunConfig, TrainConfig, from_options, resolve_precision
from ..errors import TicketlabError
from ..models import hidden_size, max_positions, model_fingerprint, model_reference, resolve_model
from ..pruning.schedules import DEFAULT_RATES
from ..tasks import TASKS, Task
from ..train.launch import check_processes
from ..train.loop import total_steps
from .finders import FINDERS

log = logging.getLogger(__name__)


def resolve_config(model: str, task: str, data: str | None, sparsity: float, **options: Any) -> RunConfig:
    """Fill the task's recipe and pruning defaults (the BERT paper's; image tasks: the CV code's) in around the given
    options (None: default).

    `rewind_epoch` E (the CV code's way to say it) is resolved to `rewind_step`: the steps of E epochs of the
    training split. `precision` "auto" is resolved to bf16 where the machine runs it natively, else fp32.
    `distill` (with `distill_alpha`, `distill_temperature`) makes the tickets learn from the dense round 0 too."""
    model_path = resolve_model(model)
    spec = TASKS.get(task)
    recipe = spec.recipe_for(hidden_size(model_path))
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    prune_names = {f.name for f in dataclasses.fields(PruneConfig)} - {"sparsity"}
    rewind_epoch = options.pop("rewind_epoch", None)
    distill = _distill_config(
        spec, options.pop("distill", None), options.pop("distill_alpha", None), options.pop("distill_temperature", None)
    )
    options["precision"] = resolve_precision(options.get("precision"))
    unknown = sorted(set(options) - train_names - prune_names)
    if unknown:
        raise TicketlabError(f"unknown option {unknown[0]!r}")
    given = {**spec.prune_defaults, **{k: v for k, v in options.items() if v is not None}}
    schedule = given.get("schedule", PruneConfig.schedule)
    given.setdefault("rate", DEFAULT_RATES.get(schedule, PruneConfig.rate))
    train_config = dataclasses.replace(recipe, **{k: v for k, v in given.items() if k in train_names})
    spec.check_batch(train_config)
    check_processes(train_config)
    if data is not None and not Path(data).exists():
        raise TicketlabError(f"data not found: {data}")
    if rewind_epoch is not None:
        given["rewind_step"] = _epoch_steps(spec, data, train_config, rewind_epoch, given.get("rewind_step"))
    prune_config = PruneConfig(sparsity=sparsity, **{k: v for k, v in given.items() if k in prune_names})
    _check_finder_settings(prune_config)
    positions = max_positions(model_path)
    if positions is not None and train_config.max_length > positions:
        if "max_length" in given:
            raise TicketlabError(
                f"max_length {train_config.max_length} is longer than the {positions} positions {model} takes"
            )
        log.warning(  # the task's default, not asked for: clamped, as transformers' run_qa does
            "the %s recipe's max_length %d is longer than the %d positions %s takes: %d it is",
            task,
            train_config.max_length,
            positions,
            model,
            positions,
        )
        train_config = dataclasses.replace(train_config, max_length=positions)
    return RunConfig(
        model=model_reference(model),
        model_hash=model_fingerprint(model_path),
        task=task,
        data=str(Path(data).resolve()) if data is not None else None,
        train=train_config,
        prune=prune_config,
        distill=distill,
    )


def _distill_config(
    task: Task, distill: bool | None, alpha: float | None, temperature: float | None
) -> DistillConfig | None:
    """The run's distillation settings (None: none), refused in one line where the task has no outputs to distill or
    a setting comes without `distill`."""
    given = {name: value for name, value in (("alpha", alpha), ("temperature", temperature)) if value is not None}
    if not distill:
        if given:
            raise TicketlabError(f"distill_{next(iter(given))} is a setting of --distill, which this run does not use")
        return None
    if task.distillation is None:
        raise TicketlabError(f"task {task.name} has no outputs a ticket can be distilled on (--distill)")
    return from_options(DistillConfig, given)


def _check_finder_settings(prune: PruneConfig) -> None:
    """A one-line error for a setting of another finder than the run's, changed from its default: it would change
    nothing but the run's name."""
    FINDERS.get(prune.finder)
    own = FINDER_SETTINGS.get(prune.finder, ())
    for name, settings in FINDER_SETTINGS.items():
        for setting in settings:
            if setting not in own and getattr(prune, setting) != getattr(PruneConfig, setting):
                raise TicketlabError(f"{setting} is a setting of the {name} finder, and this run's is {prune.finder}")


def _epoch_steps(task: Task, data: str | None, train: TrainConfig, epochs: int, rewind_step: int | None) -> int:
    """The optimizer steps of `epochs` epochs of the task's training split (the rewinding point of `rewind_epoch`)."""
    if rewind_step:
        raise TicketlabError("give rewind_step or rewind_epoch, not both")
    if epochs < 0:
        raise TicketlabError(f"rewind_epoch must be >= 0, got {epochs}")
    examples = len(task.splits(data)["train"][: train.train_examples])
    return epochs * total_steps(examples, dataclasses.replace(train, epochs=1))
