"""Iterative magnitude pruning: train -> prune -> rewind the kept weights -> train again, round by round.

Every round is idempotent: a complete round is skipped, an interrupted one resumes from its checkpoint.
The control experiments and transfers are branches of a run: the same training, from a mask and start weights
that derive from the run's rounds (see ticketlab.controls).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, load_model as load_weights, save_file, save_model
from .atomic import atomic_path, remove
from .config import PruneConfig, RunConfig, TrainConfig
from .controls import CONTROLS, Control
from .errors import TicketlabError
from .masks import Mask, apply_mask, fit_mask, load_mask, ones_like, save_mask, sparsity
from .models import (
    EMBEDDED_MODELS,
    backbone,
    head_parameters,
    hidden_size,
    load_pretrained,
    layer_stack_weights,
    model_fingerprint,
    prunable_weights,
    resolve_model,
)
from .pruning import METHODS, check_scope, round_at
from .store import RunStore
from .tasks import TASKS, Task
from .train import MaskEnforcer, TrainHook, TrainResult, accelerator, predict, total_steps, train

DEFAULT_RATES = {"linear": 0.1, "geometric": 0.2}


@dataclass
class LotteryResult:
    """Where the run lives and each round's metrics.json."""

    path: Path
    rounds: list[dict[str, Any]]


def resolve_config(model: str, task: str, data: str | None, sparsity: float, **options: Any) -> RunConfig:
    """Fill the task's recipe and pruning defaults (the BERT paper's; image tasks: the CV code's) in around the given
    options (None: default).

    `rewind_epoch` E (the CV code's way to say it) is resolved to `rewind_step`: the steps of E epochs of the
    training split."""
    model_path = resolve_model(model)
    spec = TASKS.get(task)
    recipe = spec.recipe_for(hidden_size(model_path))
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    prune_names = {f.name for f in dataclasses.fields(PruneConfig)} - {"sparsity"}
    rewind_epoch = options.pop("rewind_epoch", None)
    unknown = sorted(set(options) - train_names - prune_names)
    if unknown:
        raise TicketlabError(f"unknown option {unknown[0]!r}")
    given = {**spec.prune_defaults, **{k: v for k, v in options.items() if v is not None}}
    schedule = given.get("schedule", PruneConfig.schedule)
    given.setdefault("rate", DEFAULT_RATES.get(schedule, PruneConfig.rate))
    train_config = dataclasses.replace(recipe, **{k: v for k, v in given.items() if k in train_names})
    if data is not None and not Path(data).exists():
        raise TicketlabError(f"data not found: {data}")
    if rewind_epoch is not None:
        given["rewind_step"] = _epoch_steps(spec, data, train_config, rewind_epoch, given.get("rewind_step"))
    prune_config = PruneConfig(sparsity=sparsity, **{k: v for k, v in given.items() if k in prune_names})
    _validate(train_config, prune_config)
    return RunConfig(
        model=model if model in EMBEDDED_MODELS else str(model_path.resolve()),
        model_hash=model_fingerprint(model_path),
        task=task,
        data=str(Path(data).resolve()) if data is not None else None,
        train=train_config,
        prune=prune_config,
    )


def find(
    model: str = "splade-tiny",
    task: str = "rotten-tomatoes",
    *,
    data: str | None = None,
    sparsity: float = PruneConfig.sparsity,
    out: str | Path = "runs",
    controls: Sequence[str] = (),
    save_weights: bool = False,
    checkpoint_every: int = 100,
    hooks: Sequence[TrainHook] = (),
    **options: Any,
) -> LotteryResult:
    """Find a lottery ticket by IMP. `options` are TrainConfig and PruneConfig fields (e.g. epochs=1, scope="per-matrix").

    `controls` (names in ticketlab.controls.CONTROLS) then run as branches at every pruned round.
    Re-running the same call skips complete rounds and resumes an interrupted one. Only the dense and the last
    round's trained weights are kept unless `save_weights`.
    """
    if checkpoint_every < 1:
        raise TicketlabError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    for name in controls:
        CONTROLS.get(name)
    config = resolve_config(model, task, data, sparsity, **options)
    result = run_lottery(config, Path(out), save_weights, checkpoint_every, hooks)
    if controls:
        run_controls(config, Path(out), controls, checkpoint_every=checkpoint_every, hooks=hooks)
    return result


def run_lottery(
    config: RunConfig,
    out: Path,
    save_weights: bool = False,
    checkpoint_every: int = 100,
    hooks: Sequence[TrainHook] = (),
    last_round: int | None = None,
) -> LotteryResult:
    """Run every round of `config` (up to `last_round`) that the run store under `out` does not hold complete yet."""
    store = RunStore(out / config.name())
    levels = config.prune.levels()
    rounds = range(len(levels) if last_round is None else last_round + 1)
    if not all(store.is_complete(r) for r in rounds):
        lottery = Lottery(config, store, save_weights, checkpoint_every, hooks)  # checks everything before writing
        store.initialize(config)
        for round in rounds:
            if not store.is_complete(round):
                lottery.run_round(round, levels[round])
    return LotteryResult(store.path, [store.metrics(r) for r in rounds])


def run_controls(
    config: RunConfig,
    out: Path,
    controls: Sequence[str],
    rounds: Sequence[int] | None = None,
    checkpoint_every: int = 100,
    hooks: Sequence[TrainHook] = (),
) -> None:
    """Train each control at each pruned round of a complete lottery run (`rounds`: only these)."""
    store = RunStore(out / config.name())
    levels = config.prune.levels()
    rounds = list(range(1, len(levels)) if rounds is None else rounds)
    incomplete = [r for r in [0, *rounds] if not store.is_complete(r)]
    if incomplete:
        raise TicketlabError(f"{store.path}: round {incomplete[0]} of the lottery run is not complete; run find first")
    lottery: Lottery | None = None
    for name in controls:
        control = CONTROLS.get(name)
        for round in rounds:
            if store.branch(name).is_complete(round):
                continue
            lottery = lottery or Lottery(config, store, False, checkpoint_every, hooks)
            rng = seeded_generator(config.train.seed, name, round)
            mask = control.mask(lottery, round, levels[round], rng)
            if mask is not None:
                lottery.run_branch(name, round, levels[round], mask, lambda: lottery.start_control(control, round, rng))


def seeded_generator(*key: object) -> torch.Generator:
    """A generator seeded by a stable hash of `key` (the run's seed, the control, the round)."""
    digest = hashlib.sha256("/".join(map(str, key)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


class Lottery:
    """The state shared by the rounds of one run: data, model, θ0. It is the `Parent` the controls read."""

    def __init__(self, config: RunConfig, store: RunStore, save_weights: bool, checkpoint_every: int, hooks: Sequence[TrainHook]):
        self.config, self.store, self.save_weights, self.checkpoint_every = config, store, save_weights, checkpoint_every
        self.hooks = list(hooks)
        self.scope = config.prune.scope
        self.levels = config.prune.levels()
        self.task = TASKS.get(config.task)
        model_path = resolve_model(config.model)
        self.processor = processor = self.task.processor(model_path)  # a tokenizer, or an image task's input format
        self.examples = self.task.splits(config.data)
        self.examples["train"] = self.examples["train"][: config.train.train_examples]
        self.features = {name: self.task.encode(processor, examples, config.train.max_length) for name, examples in self.examples.items()}
        self.train_collate, self.eval_collate = self.task.collator(processor, train=True), self.task.collator(processor, train=False)
        steps = total_steps(len(self.features["train"]), config.train)
        if config.prune.rewind_step > steps:
            raise TicketlabError(f"--rewind-step {config.prune.rewind_step} is past the {steps} steps of a round")
        self.model = load_pretrained(model_path, self.task.auto_class, config.train.seed, **self.task.model_options(config.data))
        self.model.to(accelerator().device)
        self.weights = prunable_weights(self.model)
        self.theta0 = {k: v.detach().clone() for k, v in backbone(self.model).state_dict().items()}
        self.head0 = {k: v.detach().clone() for k, v in head_parameters(self.model).items()}
        self._dense: dict[str, torch.Tensor] | None = None

    def run_round(self, round: int, level: float) -> None:
        """IMP round `round`: prune the previous round's trained weights to `level`, rewind, train, record."""
        store = self.store
        resuming = store.checkpoint_path(round).exists()
        if round > 0 and not resuming:
            load_weights(self.model, str(store.weights_path(round - 1)))  # to prune, and for the trained head
        mask = self._mask(round, level)
        if not resuming:
            self._rewind(round, mask)
            self._save(store.head_path(round), {k: p.detach() for k, p in head_parameters(self.model).items()})
        hooks: list[TrainHook] = []
        if round == 0 and self.config.prune.rewind_step > 0:
            hooks.append(_SaveRewindPoint(self.config.prune.rewind_step, store.rewind_path()))
        record = self._train(store, round, level, mask, hooks, f"round {round} · sparsity {level:.1%}")
        if accelerator().is_main_process:
            with atomic_path(store.weights_path(round)) as tmp:
                save_model(self.model, str(tmp))
            store.complete(round, record)
            remove(store.checkpoint_path(round))
            if round > 1 and not self.save_weights:
                remove(store.weights_path(round - 1))  # the dense round 0 stays: the one-shot control prunes it
        accelerator().wait_for_everyone()

    def run_branch(self, name: str, round: int, level: float, mask: Mask, start: Callable[[], None], **record: Any) -> None:
        """Train `mask` from the weights `start` sets, as branch `name` of round `round`; `record` adds to its
        metrics.json (its "arm" defaults to `name`)."""
        rounds = self.store.branch(name)
        if not rounds.checkpoint_path(round).exists():
            start()
            apply_mask(self.weights, mask)
        if accelerator().is_main_process:
            save_mask(rounds.mask_path(round), mask, {**self.provenance(round, mask), "branch": name})
        metrics = self._train(rounds, round, level, mask, [], f"{name} · sparsity {level:.1%}")
        if accelerator().is_main_process:
            rounds.complete(round, {"arm": name, **metrics, **record})
            remove(rounds.checkpoint_path(round))
        accelerator().wait_for_everyone()

    def start_control(self, control: Control, round: int, rng: torch.Generator) -> None:
        """Start weights of a control at `round`: IMP's starting head of that round, θ0 changed by the control."""
        self.model.load_state_dict(load_file(str(self.store.head_path(round))), strict=False)
        backbone(self.model).load_state_dict(self.theta0)
        start = control.weights({n: self.theta0[n] for n in self.weights}, self, rng)
        with torch.no_grad():
            for name, weight in self.weights.items():
                weight.copy_(start[name])

    def start_from_theta0(self) -> None:
        """θ0 and a fresh head (from the run's seed): how a transferred ticket starts."""
        self.model.load_state_dict(self.head0, strict=False)
        backbone(self.model).load_state_dict(self.theta0)

    def fit(self, mask: Mask) -> Mask:
        """A ticket of another task, fitted to this model (see ticketlab.masks.fit_mask)."""
        return fit_mask(mask, self.weights, required=layer_stack_weights(self.model))

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

    # -- shared by rounds and branches --

    def _train(self, rounds: RunStore, round: int, level: float, mask: Mask, hooks: list[TrainHook], description: str) -> dict[str, Any]:
        """Train from the model's current weights with `mask` enforced, evaluate, and return the round's record."""
        enforcer = MaskEnforcer(list(self.weights.values()), [mask[n] for n in self.weights])
        record = self.train_model(self.model, rounds, round, [enforcer, *hooks], description)
        return {"round": round, "level": level, "sparsity": sparsity(mask), **record}

    def train_model(self, model: torch.nn.Module, rounds: RunStore, round: int, hooks: list[TrainHook], description: str) -> dict[str, Any]:
        """Train `model` (this run's, or one built from it), checkpointing in `rounds`' round folder, then evaluate
        it. Returns steps, train loss, training time, wall time (with evaluation) and every split's metrics."""
        started = time.perf_counter()
        result = self.run_training(model, rounds.checkpoint_path(round), hooks, description, round)
        train_time = time.perf_counter() - started
        metrics = {split: self.evaluate(split, model) for split in self.task.eval_splits}
        return {
            "steps": result.steps,
            "train_loss": result.train_loss,
            "train_time_s": train_time,
            "wall_time_s": time.perf_counter() - started,
            **metrics,
        }

    def run_training(self, model: torch.nn.Module, checkpoint: Path, hooks: list[TrainHook], description: str, round: int) -> TrainResult:
        """The run's recipe and training data on `model`, resumable from `checkpoint`."""
        torch.manual_seed(self.config.train.seed + round)  # this round's dropout (a checkpoint restores its own state)
        return train(
            model,
            self.features["train"],
            self.train_collate,
            self.config.train,
            hooks=[*hooks, *self.hooks],
            checkpoint=checkpoint,
            checkpoint_every=self.checkpoint_every,
            description=description,
            forward=self.task.forward,
        )

    def evaluate(self, split: str, model: torch.nn.Module | None = None) -> dict[str, float]:
        """Metrics of `model` (default: the run's) on an evaluation split."""
        features = self.features[split]
        model = self.model if model is None else model
        outputs = predict(model, features, self.eval_collate, self.config.train.batch_size, self.task.outputs, self.task.forward)
        return self.task.score(self.examples[split], features, outputs)

    def _save(self, path: Path, tensors: dict[str, torch.Tensor]) -> None:
        if accelerator().is_main_process:
            with atomic_path(path) as tmp:
                save_file({k: v.cpu().contiguous() for k, v in tensors.items()}, str(tmp))

    def _mask(self, round: int, level: float) -> Mask:
        """Round 0 is dense; round r prunes the model's weights (round r-1's, trained) to `level`.
        The mask is saved before training starts, so a resumed round finds it."""
        store = self.store
        if store.mask_path(round).exists():
            return load_mask(store.mask_path(round))[0]
        if round == 0:
            mask = ones_like(self.weights)
        else:
            previous = load_mask(store.mask_path(round - 1))[0]
            prune = METHODS.get(self.config.prune.method)
            mask = prune(self.weights, previous, level, scope=self.config.prune.scope)
        if accelerator().is_main_process:
            save_mask(store.mask_path(round), mask, self.provenance(round, mask))
        return mask

    def _rewind(self, round: int, mask: Mask) -> None:
        """Start weights of a round: θ0 (or θi) for the backbone, the kept weights only; the head keeps the
        values it was trained to in the previous round (loaded already) unless `rewind_head`."""
        if round == 0:
            self.start_from_theta0()
        else:
            rewind = self.store.rewind_path() if self.config.prune.rewind_step else None
            backbone(self.model).load_state_dict(load_file(str(rewind)) if rewind else self.theta0)
            if self.config.prune.rewind_head:
                self.model.load_state_dict(self.head0, strict=False)
        apply_mask(self.weights, mask)

    def provenance(self, round: int, mask: Mask) -> dict[str, Any]:
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


class _SaveRewindPoint(TrainHook):
    """Saves the backbone after step i of round 0: the θi that later rounds rewind to."""

    def __init__(self, step: int, path: Path):
        self.step, self.path = step, path

    def after_step(self, step: int, model: torch.nn.Module) -> None:
        if step == self.step and accelerator().is_main_process:
            state = {k: v.detach().cpu().contiguous() for k, v in backbone(model).state_dict().items()}
            with atomic_path(self.path) as tmp:
                save_file(state, str(tmp))


def _epoch_steps(task: Task, data: str | None, train: TrainConfig, epochs: int, rewind_step: int | None) -> int:
    """The optimizer steps of `epochs` epochs of the task's training split (the rewinding point of `rewind_epoch`)."""
    if rewind_step:
        raise TicketlabError("give rewind_step or rewind_epoch, not both")
    if epochs < 0:
        raise TicketlabError(f"rewind_epoch must be >= 0, got {epochs}")
    examples = len(task.splits(data)["train"][: train.train_examples])
    return epochs * total_steps(examples, dataclasses.replace(train, epochs=1))


def _validate(train: TrainConfig, prune: PruneConfig) -> None:
    prune.levels()  # raises on a bad target, rate or schedule
    METHODS.get(prune.method)
    check_scope(prune.scope)
    check_train_config(train)
    if prune.rewind_step < 0:
        raise TicketlabError(f"rewind_step must be >= 0, got {prune.rewind_step}")


def check_train_config(train: TrainConfig) -> None:
    """A one-line error for a setting that cannot train (a count or rate that is not positive)."""
    positive = {"epochs": train.epochs, "batch_size": train.batch_size, "learning_rate": train.learning_rate, "max_length": train.max_length}
    if train.train_examples is not None:
        positive["train_examples"] = train.train_examples
    for name, value in positive.items():
        if not value > 0:
            raise TicketlabError(f"{name} must be positive, got {value}")
