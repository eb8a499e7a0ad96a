"""Iterative magnitude pruning: train -> prune -> rewind the kept weights -> train again, round by round.

Every round is idempotent: a complete round is skipped, an interrupted one resumes from its checkpoint.
The control experiments and transfers are branches of a run: the same training, from a mask and start weights
that derive from the run's rounds (see ticketlab.controls).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from safetensors.torch import load_file, load_model as load_weights, save_file, save_model
from .atomic import atomic_path
from .config import PruneConfig, RunConfig, TrainConfig
from .controls import CONTROLS, Control
from .errors import TicketlabError
from .masks import LOW_DENSITY, Mask, apply_mask, fit_mask, load_mask, nearly_empty, ones_like, save_mask, sparsity
from .models import (
    EMBEDDED_MODELS,
    backbone,
    head_parameters,
    hidden_size,
    load_pretrained,
    layer_stack_weights,
    max_positions,
    model_fingerprint,
    prunable_weights,
    resolve_model,
)
from .pruning import METHODS, round_at, scope_rankings
from .store import RunStore
from .tasks import TASKS, Task
from .train import MaskEnforcer, TrainHook, TrainResult, accelerator, predict, seeded_generator, total_steps, train, usable_checkpoint

DEFAULT_RATES = {"linear": 0.1, "geometric": 0.2}
log = logging.getLogger(__name__)


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
    spec.check_batch(train_config)
    if data is not None and not Path(data).exists():
        raise TicketlabError(f"data not found: {data}")
    if rewind_epoch is not None:
        given["rewind_step"] = _epoch_steps(spec, data, train_config, rewind_epoch, given.get("rewind_step"))
    prune_config = PruneConfig(sparsity=sparsity, **{k: v for k, v in given.items() if k in prune_names})
    positions = max_positions(model_path)
    if positions is not None and train_config.max_length > positions:
        raise TicketlabError(f"max_length {train_config.max_length} is longer than the {positions} positions {model} takes")
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
    lottery: Lottery | None = None
    if not all(store.is_complete(r) for r in rounds):  # digests are checked once, under the lock
        lottery = Lottery(config, store, save_weights, checkpoint_every, hooks)  # checks everything before writing
    with writing(store):
        store.initialize(config)
        for round in rounds:
            store.intact(round)  # a damaged round is reported and reopened; leftovers of a kill go
        _reopen_sources(store, rounds)
        trained = [round for round in rounds if not store.is_complete(round)]
        for round in trained:
            lottery = lottery or Lottery(config, store, save_weights, checkpoint_every, hooks)
            lottery.run_round(round, levels[round])
        if not save_weights and accelerator().is_main_process:
            for round in set(trained) - {0, rounds[-1]}:  # a redone middle round's; the dense round 0 and the last stay
                store.discard(round, "weights.safetensors")
    return LotteryResult(store.path, [store.metrics(r) for r in rounds])


def _reopen_sources(store: RunStore, rounds: range) -> None:
    """A reopened round whose mask or starting head is gone is prepared again from the previous round's trained
    weights: where those were not kept, the previous round is trained again too (and so on back)."""
    for round in reversed(rounds):
        if round > 0 and not store.is_complete(round) and not _inputs_ready(store, round):
            if store.is_complete(round - 1) and not store.weights_path(round - 1).exists():
                log.info("round %d is trained again: round %d is made from its weights", round - 1, round)
                store.reopen(round - 1, {})


def _inputs_ready(store: RunStore, round: int) -> bool:
    """The round's mask and starting head are written (they are made before it trains)."""
    return store.mask_path(round).exists() and store.head_path(round).exists()


@contextmanager
def writing(store: RunStore) -> Iterator[None]:
    """The run held for writing by this command (the main process takes the lock; the others follow it)."""
    with store.lock() if accelerator().is_main_process else nullcontext():
        yield


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
    for round in [0, *rounds]:
        store.verified(round)  # the controls read its masks, heads and dense weights
    lottery: Lottery | None = None
    with writing(store):
        for name in controls:
            control = CONTROLS.get(name)
            for round in rounds:
                if store.branch(name).intact(round):
                    continue
                lottery = lottery or Lottery(config, store, False, checkpoint_every, hooks)
                rng = seeded_generator(config.train.seed, name, round)
                mask = control.mask(lottery, round, levels[round], rng)
                if mask is not None:
                    lottery.run_branch(name, round, levels[round], mask, lambda: lottery.start_control(control, round, rng))


class Lottery:
    """The state shared by the rounds of one run: data, model, θ0. It is the `Parent` the controls read."""

    def __init__(self, config: RunConfig, store: RunStore, save_weights: bool, checkpoint_every: int, hooks: Sequence[TrainHook]):
        self.config, self.store, self.save_weights, self.checkpoint_every = config, store, save_weights, checkpoint_every
        self.hooks = list(hooks)
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
        self.rankings = scope_rankings(config.prune.scope, list(self.weights), layer_stack_weights(self.model))
        self.theta0 = {k: v.detach().clone() for k, v in backbone(self.model).state_dict().items()}
        self.head0 = {k: v.detach().clone() for k, v in head_parameters(self.model).items()}
        self._dense: dict[str, torch.Tensor] | None = None

    def run_round(self, round: int, level: float) -> None:
        """IMP round `round`: prune the previous round's trained weights to `level`, rewind, train, record."""
        store = self.store
        if not _inputs_ready(store, round):
            self._prepare(round, level)
        mask = load_mask(store.mask_path(round))[0]
        if not usable_checkpoint(store.checkpoint_path(round)):
            self._rewind(round, mask)
        hooks: list[TrainHook] = []
        rewinding = round == 0 and self.config.prune.rewind_step > 0
        if rewinding:
            hooks.append(_SaveRewindPoint(self.config.prune.rewind_step, store.rewind_path()))
        record = self._train(store, round, level, mask, hooks, f"round {round} · sparsity {level:.1%}")
        if accelerator().is_main_process:
            with atomic_path(store.weights_path(round)) as tmp:
                save_model(self.model, str(tmp))
            store.complete(round, record, extra=[store.rewind_path()] if rewinding else [])
            if round > 1 and not self.save_weights:
                store.discard(round - 1, "weights.safetensors")  # the dense round 0 stays: the one-shot control prunes it
        accelerator().wait_for_everyone()

    def run_branch(self, name: str, round: int, level: float, mask: Mask, start: Callable[[], None], **record: Any) -> None:
        """Train `mask` from the weights `start` sets, as branch `name` of round `round`; `record` adds to its
        metrics.json (its "arm" defaults to `name`)."""
        rounds = self.store.branch(name)
        if not usable_checkpoint(rounds.checkpoint_path(round)):
            start()
            apply_mask(self.weights, mask)
        if accelerator().is_main_process:
            save_mask(rounds.mask_path(round), mask, {**self.provenance(round, mask), "branch": name})
        metrics = self._train(rounds, round, level, mask, [], f"{name} · sparsity {level:.1%}")
        if accelerator().is_main_process:
            rounds.complete(round, {"arm": name, **metrics, **record})
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
        emptied = nearly_empty(mask)
        if emptied:
            log.warning("%s: below %g%% density: %s", description, 100 * LOW_DENSITY,
                        ", ".join(f"{name} keeps {density:.2%}" for name, density in emptied.items()))
        enforcer = MaskEnforcer(list(self.weights.values()), [mask[n] for n in self.weights])
        record = self.train_model(self.model, rounds, round, [enforcer, *hooks], description)
        low = [{"matrix": name, "kept": density} for name, density in emptied.items()]
        return {"round": round, "level": level, "sparsity": sparsity(mask), **record, **({"nearly_empty": low} if low else {})}

    def train_model(self, model: torch.nn.Module, rounds: RunStore, round: int, hooks: list[TrainHook], description: str) -> dict[str, Any]:
        """Train `model` (this run's, or one built from it), checkpointing in `rounds`' round folder, then evaluate
        it. Returns steps, train loss, training time, wall time (with evaluation) and every split's metrics."""
        result = self.run_training(model, rounds.checkpoint_path(round), hooks, description, round)
        evaluated = time.perf_counter()
        metrics = {split: self.evaluate(split, model) for split in self.task.eval_splits}
        return {
            "steps": result.steps,
            "train_loss": result.train_loss,
            "train_time_s": result.time_s,  # over every attempt, as the wall time
            "wall_time_s": result.time_s + time.perf_counter() - evaluated,
            **metrics,
        }

    def run_training(self, model: torch.nn.Module, checkpoint: Path, hooks: list[TrainHook], description: str, round: int) -> TrainResult:
        """The run's recipe and training data on `model`, resumable from `checkpoint`."""
        seed = self.config.train.seed + round
        torch.manual_seed(seed)  # this round's dropout (a checkpoint restores its own state)
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
            seed=seed,  # and its data randomness
        )

    def evaluate(self, split: str, model: torch.nn.Module | None = None) -> dict[str, float]:
        """Metrics of `model` (default: the run's) on an evaluation split."""
        features = self.features[split]
        model = self.model if model is None else model
        outputs = predict(model, features, self.eval_collate, self.config.train.batch_size, self.task.outputs, self.task.forward)
        return self.task.score(self.examples[split], features, outputs)

    def _prepare(self, round: int, level: float) -> None:
        """Write a round's inputs before it trains (a resumed or redone round finds them): its mask, pruned to `level`
        from the previous round's trained weights (round 0: dense), and the head it starts from (round 0: the fresh
        one; later: the head trained in the previous round, the paper's choice, or the fresh one with `rewind_head`)."""
        store = self.store
        if round == 0:
            mask = ones_like(self.weights)
        else:
            load_weights(self.model, str(store.weights_path(round - 1)))
            previous = load_mask(store.mask_path(round - 1))[0]
            mask = METHODS.get(self.config.prune.method)(self.weights, previous, level, self.rankings)
        fresh_head = round == 0 or self.config.prune.rewind_head
        head = self.head0 if fresh_head else {k: p.detach() for k, p in head_parameters(self.model).items()}
        if accelerator().is_main_process:
            save_mask(store.mask_path(round), mask, self.provenance(round, mask))
            with atomic_path(store.head_path(round)) as tmp:
                save_file({k: v.cpu().contiguous() for k, v in head.items()}, str(tmp))
        accelerator().wait_for_everyone()

    def _rewind(self, round: int, mask: Mask) -> None:
        """Start weights of a round: θ0 (or θi) for the backbone, the kept weights only, and the round's starting head."""
        rewind = self.store.rewind_path() if round > 0 and self.config.prune.rewind_step else None
        backbone(self.model).load_state_dict(load_file(str(rewind)) if rewind else self.theta0)
        self.model.load_state_dict(load_file(str(self.store.head_path(round))), strict=False)
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
