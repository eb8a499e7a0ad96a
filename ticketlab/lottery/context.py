"""What every unit of a lottery run shares: the data, the model, θ0 and the fresh head; training one unit on it,
evaluating, and the provenance its masks carry. It is the `Parent` the controls read (ticketlab.controls)."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors.torch import load_file

from ..arms import EARLY_BIRD
from ..atomic import write_tensors
from ..config import RunConfig, TrainConfig
from ..errors import TicketlabError
from ..masks import LOW_DENSITY, Mask, fit_mask, load_mask, nearly_empty, sparsity
from ..models import backbone, head_parameters, layer_stack_weights, load_pretrained, prunable_weights, resolve_model
from ..pruning import WEIGHT, check_fits, magnitude_prune, parse_granularity, round_at, scope_rankings
from ..store import RunStore, log_folder, make
from ..store.records import RoundRecord, Trained
from ..tasks.data import TaskData
from ..train.hooks import MaskEnforcer, TrainHook
from ..train.launch import accelerator, on_main_process
from ..train.loop import TrainResult, total_steps, train
from ..train.tracking import Tracking
from .teacher import DistilledTraining, distilled_training

log = logging.getLogger(__name__)
WARMED_HEAD = "head.safetensors"  # in head_warmup/round_00: the task head after its warm-up


def save_head(path: Path, head: Mapping[str, torch.Tensor], provenance: Mapping[str, Any] | None = None) -> None:
    """Write a task head's values (write-then-rename), with the provenance of the mask it goes with."""
    metadata = None if provenance is None else {key: str(value) for key, value in provenance.items()}
    write_tensors(path, {k: v.cpu().contiguous() for k, v in head.items()}, metadata)


def check_round_steps(config: RunConfig, steps: int) -> None:
    """One line, before anything is trained, where a setting needs more than the `steps` of a round: a rewind step,
    or early-bird draws that cannot settle in time."""
    prune = config.prune
    if prune.rewind_step > steps:
        raise TicketlabError(f"--rewind-step {prune.rewind_step} is past the {steps} steps of a round")
    settled = prune.draw_every * (prune.settle_window + 1)  # the first step early-bird's test can pass at
    if prune.finder == EARLY_BIRD and settled > steps:
        raise TicketlabError(
            f"early-bird's draws cannot settle before step {settled} (--draw-every {prune.draw_every} × "
            f"(--settle-window {prune.settle_window} + 1)), past the {steps} steps of a round"
        )


class RunContext:
    """The model state shared by the units of one run, beside its data (`data`: ticketlab.tasks.data.TaskData): the
    model, θ0, the fresh head, the pruning rankings and granularity; training and evaluating one unit on them, the
    provenance its masks carry. `log_with`: the trackers each unit's training logs to (ticketlab.train.tracking)."""

    def __init__(
        self,
        config: RunConfig,
        store: RunStore,
        checkpoint_every: int,
        hooks: Sequence[TrainHook],
        log_with: Sequence[str] = (),
    ):
        self.config, self.store, self.checkpoint_every, self.hooks = config, store, checkpoint_every, list(hooks)
        self.log_with = tuple(log_with)
        self.levels = config.prune.levels()
        self.data = data = TaskData(config)
        check_round_steps(config, total_steps(len(data.features["train"]), config.train))
        options = data.task.model_options(config.data)
        self.model = load_pretrained(resolve_model(config.model), data.task.auto_class, config.train.seed, **options)
        self.model.to(accelerator().device)
        self._warm_head()
        self.weights = prunable_weights(self.model)
        self.rankings = scope_rankings(config.prune.scope, list(self.weights), layer_stack_weights(self.model))
        self.granularity = parse_granularity(config.prune.granularity)
        check_fits(self.weights, self.granularity)
        self.theta0 = {k: v.detach().clone() for k, v in backbone(self.model).state_dict().items()}
        self.head0 = {k: v.detach().clone() for k, v in head_parameters(self.model).items()}
        self._dense: dict[str, torch.Tensor] | None = None
        self._distilled: DistilledTraining | None = None

    def _warm_head(self) -> None:
        """With `head_warmup_epochs`: the newly initialised task head trained alone first, the backbone frozen, on the
        run's training split and recipe, as a unit of the run (head_warmup/round_00: sealed, resumable; its record
        holds the warmed head's metrics on the pre-trained backbone). Every unit of the run then starts from it: it is
        the run's head0."""
        epochs = self.config.train.head_warmup_epochs
        if not epochs:
            return
        if not head_parameters(self.model):
            raise TicketlabError(f"{self.config.model} has no task head outside its backbone to warm up")
        warmup = self.store.head_warmup()
        if not on_main_process(lambda: warmup.intact(0)):

            def keep(folder: Path) -> None:
                save_head(folder / WARMED_HEAD, self.head_values())

            make(warmup.unit(0), train=lambda: self._train_head(warmup, epochs), keep=keep)
        self.model.load_state_dict(load_file(str(warmup.round_dir(0) / WARMED_HEAD)), strict=False)

    def _train_head(self, warmup: RunStore, epochs: int) -> RoundRecord:
        """The head warm-up's training: the run's recipe for `epochs`, every backbone parameter frozen meanwhile."""
        frozen = [p for p in backbone(self.model).parameters() if p.requires_grad]
        train = self.config.train
        settings = dataclasses.replace(train, epochs=epochs, learning_rate=train.head_warmup_lr or train.learning_rate)
        try:
            for parameter in frozen:
                parameter.requires_grad_(False)
            trained = self.train_model(self.model, warmup, 0, [], "head warm-up", settings=settings)
        finally:
            for parameter in frozen:
                parameter.requires_grad_(True)
        return RoundRecord(round=0, level=0.0, sparsity=0.0, trained=trained)

    def start_from_theta0(self) -> None:
        """θ0 and the run's starting head (fresh from its seed, or warmed up): how a transferred ticket and an EarlyBERT
        search start."""
        self.model.load_state_dict(self.head0, strict=False)
        backbone(self.model).load_state_dict(self.theta0)

    def head_values(self) -> dict[str, torch.Tensor]:
        """The task head's values now, copied to the CPU: the starting head of a round whose mask is drawn now."""
        return {k: p.detach().cpu().clone() for k, p in head_parameters(self.model).items()}

    def prune_by_magnitude(self, mask: Mask, level: float) -> Mask:
        """Magnitude pruning of the model's weights as they are now, within `mask`, to `level` (the run's scope and
        granularity)."""
        return magnitude_prune(self.weights, mask, level, self.rankings, self.granularity)

    def fit(self, mask: Mask) -> Mask:
        """A ticket of another task, fitted to this model (see ticketlab.masks.fit_mask)."""
        return fit_mask(mask, self.weights, required=layer_stack_weights(self.model))

    # -- training and evaluating one unit --

    def train_masked(
        self,
        rounds: RunStore,
        round: int,
        level: float,
        mask: Mask,
        hooks: list[TrainHook],
        description: str,
        distill: bool = False,
    ) -> RoundRecord:
        """Train the run's model from its current weights with `mask` enforced, evaluate (see `train_model`), and
        return the unit's record (with the run's granularity, unless it is single weights); a matrix the mask nearly
        empties is named in one line and recorded."""
        emptied = nearly_empty(mask)
        if emptied:
            log.warning(
                "%s: below %g%% density: %s",
                description,
                100 * LOW_DENSITY,
                ", ".join(f"{name} keeps {density:.2%}" for name, density in emptied.items()),
            )
        enforcer = MaskEnforcer(list(self.weights.values()), [mask[n] for n in self.weights])
        trained = self.train_model(self.model, rounds, round, [enforcer, *hooks], description, distill)
        return RoundRecord(
            round=round,
            level=level,
            sparsity=sparsity(mask),
            trained=trained,
            granularity=None if self.granularity == WEIGHT else str(self.granularity),
            nearly_empty=[{"matrix": name, "kept": density} for name, density in emptied.items()] or None,
        )

    def train_model(
        self,
        model: torch.nn.Module,
        rounds: RunStore,
        round: int,
        hooks: list[TrainHook],
        description: str,
        distill: bool = False,
        settings: TrainConfig | None = None,
    ) -> Trained:
        """Train `model` (this run's, or one built from it), checkpointing in `rounds`' round folder, then evaluate
        it, unless a hook ended its training early (early-bird's round that only draws the next mask). With `distill`
        (a ticket of a run with distillation settings) it learns from the dense round 0 too. The cost ledger is
        ticketlab.train's, with the teacher's FLOPs where it distils. `settings`: the recipe (default: the run's)."""
        distilled = distill and self.config.distill is not None
        with self.tracking(rounds.round_dir(round)) as tracking:
            checkpoint = rounds.checkpoint_path(round)
            result = self.run_training(model, checkpoint, hooks, description, round, distilled, tracking, settings)
            evaluated = time.perf_counter()
            stopped = any(hook.should_stop() for hook in hooks)
            metrics = {} if stopped else {split: self.evaluate(split, model) for split in self.data.task.eval_splits}
            eval_time_s = time.perf_counter() - evaluated
            tracking.log_evaluation(metrics, result.steps)
        cost = result.cost(eval_time_s)
        if distilled:
            cost["teacher_flops"] = self.distilled().teacher_flops_per_step * result.steps
        return Trained(
            steps=result.steps,
            train_loss=result.train_loss,
            train_time_s=result.time_s,
            wall_time_s=result.time_s + eval_time_s,
            splits=metrics,
            cost=cost,
        )

    def run_training(
        self,
        model: torch.nn.Module,
        checkpoint: Path,
        hooks: list[TrainHook],
        description: str,
        round: int,
        distill: bool = False,
        tracking: Tracking | None = None,
        settings: TrainConfig | None = None,
    ) -> TrainResult:
        """The run's recipe (or `settings`) and training data on `model`, resumable from `checkpoint`; with
        `distill`, the teacher's outputs and the distillation loss too (ticketlab.lottery.teacher). `tracking` logs it
        (default: the checkpoint's unit, closed when training ends: a unit that is not evaluated)."""
        if tracking is None:
            with self.tracking(checkpoint.parent) as tracking:
                return self.run_training(model, checkpoint, hooks, description, round, distill, tracking, settings)
        seed = self.config.train.seed + round
        features, collate, forward = self.data.features["train"], self.data.train_collate, self.data.task.forward
        if distill:
            distilled = self.distilled()
            features, collate, forward = distilled.features, distilled.collate, distilled.forward
        torch.manual_seed(seed)  # this round's dropout (a checkpoint restores its own state)
        return train(
            model,
            features,
            collate,
            settings or self.config.train,
            hooks=[*hooks, *self.hooks, tracking],  # last: a checkpoint restores hook states by position
            checkpoint=checkpoint,
            checkpoint_every=self.checkpoint_every,
            description=description,
            forward=forward,
            seed=seed,  # and its data randomness
        )

    def tracking(self, unit: Path) -> Tracking:
        """The hook that logs the training of `unit` (its folder in the run) to the run's trackers, with the run's
        settings as its hyperparameters; a `with` block closes it."""
        run = self.store.path
        settings = {"run": run.name, "unit": unit.relative_to(run).as_posix(), **dataclasses.asdict(self.config)}
        return Tracking(self.log_with, log_folder(run, unit), settings)

    def distilled(self) -> DistilledTraining:
        """What the run's distilled units train on, made once a run (its teacher unit computed where missing)."""
        if self._distilled is None:
            self._distilled = distilled_training(self)
        return self._distilled

    def evaluate(
        self, split: str, model: torch.nn.Module | None = None, precision: str | None = None
    ) -> dict[str, float]:
        """Metrics of `model` (default: the run's) on an evaluation split (see TaskData.evaluate)."""
        return self.data.evaluate(split, self.model if model is None else model, precision)

    def provenance(self, round: int, mask: Mask) -> dict[str, Any]:
        """What a mask of this run carries: base model and weights hash, task, round, level, sparsity, seed, config."""
        config = self.config
        return {
            "format": "ticketlab-mask/1",
            "base_model": config.model,
            "model_hash": config.model_hash,
            "task": config.task,
            "round": round,
            "level": f"{self.levels[round]:.6f}",
            "sparsity": f"{sparsity(mask):.6f}",
            "seed": config.train.seed,
            "config_hash": config.hash(),
        }

    # -- the Parent protocol of ticketlab.controls --

    def imp_mask(self, round: int) -> Mask:
        return load_mask(self.store.mask_path(round))[0]

    def round_at(self, level: float) -> int | None:
        return round_at(self.levels, level)

    def dense_weights(self) -> dict[str, torch.Tensor]:
        if self._dense is None:  # read once: the one-shot control prunes it at every level
            trained = load_file(str(self.store.weights_path(0)))
            names = {id(p): name for name, p in self.model.named_parameters()}
            self._dense = {name: trained[names[id(w)]] for name, w in self.weights.items()}
        return self._dense

    def initial_weights(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
            fresh = type(self.model)(self.model.config)
        return {name: w.detach() for name, w in prunable_weights(fresh).items()}
