"""The rounds of a lottery run: train -> draw the next mask -> rewind the kept weights -> train again. IMP draws it by
magnitude from the last round's trained weights; the other finders (ticketlab.lottery.finders) draw it their way.

Every round is idempotent: a complete round is skipped, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file, save_file, save_model
from safetensors.torch import load_model as load_weights

from ..arms import EARLY_BIRD
from ..atomic import atomic_path
from ..config import PruneConfig, RunConfig
from ..controls import CONTROLS
from ..errors import TicketlabError
from ..masks import Mask, apply_mask, load_mask, ones_like, save_mask
from ..models import backbone
from ..pruning import WEIGHT, round_at
from ..store import RunStore, make
from ..store.records import RoundRecord
from ..train.hooks import TrainHook
from ..train.launch import accelerator, check_same_mask, on_main_process
from ..train.tracking import check_trackers
from .branches import run_controls
from .context import RunContext, save_head
from .early_bird import Head, draw_head_path, draw_path
from .finders import FINDERS, Finder
from .settings import resolve_config

log = logging.getLogger(__name__)


@dataclass
class LotteryResult:
    """Where the run lives and each round's metrics.json."""

    path: Path
    rounds: list[dict[str, Any]]


def find(
    model: str = "splade-tiny",
    task: str = "rotten-tomatoes",
    *,
    data: str | None = None,
    sparsity: float = PruneConfig.sparsity,
    out: str | Path = "runs",
    controls: Sequence[str] = (),
    controls_at: Sequence[float] | None = None,
    save_weights: bool = False,
    checkpoint_every: int = 100,
    hooks: Sequence[TrainHook] = (),
    log_with: Sequence[str] = (),
    **options: Any,
) -> LotteryResult:
    """Find a lottery ticket by IMP (or the finder `options["finder"]` names: ticketlab.lottery.finders). `options`
    are TrainConfig and PruneConfig fields (e.g. epochs=1, scope="per-matrix", finder="gmp").

    `controls` (names in ticketlab.controls.CONTROLS) then run as branches at every pruned round, or at the rounds of
    the sparsities `controls_at` lists (each one of the schedule's levels).
    Re-running the same call skips complete rounds and resumes an interrupted one. Only the dense and the last
    round's trained weights are kept unless `save_weights`. `log_with` (e.g. ["tensorboard"]): the trackers every
    unit logs to (ticketlab.train.tracking), under the run's logs/.
    """
    if checkpoint_every < 1:
        raise TicketlabError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    log_with = check_trackers(log_with)
    for name in controls:
        CONTROLS.get(name)
    if controls_at is not None and not controls:
        raise TicketlabError("controls_at says where the controls run, and no control is named (--controls)")
    config = resolve_config(model, task, data, sparsity, **options)
    rounds = None if controls_at is None else control_rounds(config.prune.levels(), controls_at)
    result = run_lottery(config, Path(out), save_weights, checkpoint_every, hooks, log_with=log_with)
    if controls:
        run_controls(config, Path(out), controls, rounds, checkpoint_every, hooks, log_with)
    return result


def control_rounds(levels: Sequence[float], controls_at: Sequence[float]) -> list[int]:
    """The pruned rounds at the sparsities `controls_at` lists; a sparsity the schedule never reaches is refused in
    one line (controls at 50, 70 and 90% of a run pruning 10% a round: rounds 5, 7 and 9)."""
    rounds = [round_at(list(levels), level) for level in controls_at]
    if missing := [level for level, round in zip(controls_at, rounds) if not round]:
        shown = ", ".join(f"{level:.4g}" for level in levels[1:])
        raise TicketlabError(f"controls_at {missing[0]:g} is not a sparsity of the run's schedule: {shown}")
    return sorted(set(rounds))


def run_lottery(
    config: RunConfig,
    out: Path,
    save_weights: bool = False,
    checkpoint_every: int = 100,
    hooks: Sequence[TrainHook] = (),
    last_round: int | None = None,
    log_with: Sequence[str] = (),
) -> LotteryResult:
    """Run every round of `config` (up to `last_round`) that the run store under `out` does not hold complete yet,
    each logged to the trackers `log_with` names."""
    store = RunStore(out / config.name())
    levels = config.prune.levels()
    rounds = range(len(levels) if last_round is None else last_round + 1)
    context: RunContext | None = None
    if not all(store.is_complete(r) for r in rounds):  # digests are checked once, under the lock
        context = RunContext(config, store, checkpoint_every, hooks, log_with)  # checks everything before writing
    finder = FINDERS.get(config.prune.finder)
    with store.lock():
        trained, dense, search = on_main_process(lambda: _plan(store, config, rounds, finder))
        if search:
            context = context or RunContext(config, store, checkpoint_every, hooks, log_with)
            finder.search(context)  # first, and again where it is damaged (said in one line), complete rounds or not
        for round in trained:
            context = context or RunContext(config, store, checkpoint_every, hooks, log_with)
            if round == 0 and dense is not None:
                _copy_dense_round(context, RunStore(dense))
                continue
            run_round(context, round, levels[round], save_weights)
        if not save_weights:  # a redone middle round's; the dense round 0 and the last stay
            _discard_weights(store, sorted(set(trained) - {0, rounds[-1]}))
    return LotteryResult(store.path, [store.metrics(r) for r in rounds])


def _plan(store: RunStore, config: RunConfig, rounds: range, finder: Finder) -> tuple[list[int], Path | None, bool]:
    """On the main process: the run's config written, damaged rounds reported and reopened (leftovers of a kill
    swept), and what the command does: the rounds it trains, the run beside it whose dense round 0 it copies (None:
    it trains its own; see `_dense_source`), and whether the finder's search runs (it is missing or damaged)."""
    store.initialize(config)
    for round in rounds:
        store.intact(round)
    _reopen_sources(store, rounds, finder)
    trained = [round for round in rounds if not store.is_complete(round)]
    search = finder.search is not None and len(rounds) > 1 and not store.searches().intact(0)
    return trained, _dense_source(store, config) if 0 in trained else None, search


def run_round(context: RunContext, round: int, level: float, save_weights: bool = False) -> None:
    """Round `round`, made as a unit (ticketlab.store.units): its mask drawn at `level` (IMP: prune the previous
    round's trained weights) and its starting head, the kept weights rewound, trained, recorded and sealed."""
    store, prune = context.store, context.config.prune
    finder = FINDERS.get(prune.finder)
    rewinding = round == 0 and prune.rewind_step > 0
    draws: list[tuple[Mask, Head]] = []  # the next round's mask and head, where the finder watches this one train

    def inputs() -> None:
        if not _inputs_ready(store, round):
            _prepare(context, finder, round, level)

    def trained() -> RoundRecord:
        hooks: list[TrainHook] = [_SaveRewindPoint(prune.rewind_step, store.rewind_path())] if rewinding else []
        watch = finder.watch(context, round) if round + 1 < len(context.levels) else None  # reads the round's mask
        if watch is not None:
            hooks.append(watch)
        mask = load_mask(store.mask_path(round))[0]
        # a watch that stops it: no metrics; a ticket of a distilled run learns from the dense round 0
        description = f"round {round} · sparsity {level:.1%}"
        record = context.train_masked(store, round, level, mask, hooks, description, distill=round > 0)
        if watch is not None:
            draw, draw_head, settled = watch.result(record.trained.steps)
            draws.append((draw, draw_head))
            record = replace(record, draw=settled, search_only=watch.should_stop())
        return record

    def keep(folder: Path) -> None:
        with atomic_path(store.weights_path(round)) as tmp:
            save_model(context.model, str(tmp))
        for draw, draw_head in draws:
            provenance = context.provenance(round + 1, draw)
            save_mask(draw_path(store, round), draw, provenance)
            save_head(draw_head_path(store, round), draw_head, provenance)

    make(
        store.unit(round),
        inputs=inputs,
        start=lambda: _rewind(context, round),
        train=trained,
        keep=keep,
        extra=[store.rewind_path()] if rewinding else [],
    )
    if round > 1 and not save_weights:
        _discard_weights(store, [round - 1])  # the dense round 0 stays: the one-shot control prunes it


def _discard_weights(store: RunStore, rounds: list[int]) -> None:
    """The trained weights of complete `rounds` removed (by the main process; every process waits for it)."""

    def discard() -> None:
        for round in rounds:
            store.discard(round, "weights.safetensors")

    on_main_process(discard)


def _dense_source(store: RunStore, config: RunConfig) -> Path | None:
    """A run beside `store`'s (under the same folder) whose complete and intact round 0 is the same dense model as
    `config`'s: the same model, data, recipe and seed, from θ0, without early-bird's watch (its round 0 also draws the
    next mask); None when there is none."""
    if not _dense_round_alone(config):
        return None
    for settings in sorted(store.path.parent.glob("*/config.json")):
        source = RunStore(settings.parent)
        if source.path == store.path or not source.is_complete(0) or not source.weights_path(0).exists():
            continue
        try:
            other = source.config()
        except TicketlabError:
            continue
        same = (other.model, other.model_hash, other.task, other.data, other.train)
        if same != (config.model, config.model_hash, config.task, config.data, config.train) or not _dense_round_alone(
            other
        ):
            continue
        if not source.damage(0):
            return source.path
    return None


def _copy_dense_round(context: RunContext, source: RunStore) -> None:
    """Round 0 of `context`'s run made from `source`'s (see `_dense_source`): its trained weights and head copied, the
    mask written with this run's provenance, and the record taken over, so the store holds what training it would (the
    same whichever runs finished first, as on Ray); the log names the run."""
    store = context.store

    def copy(folder: Path) -> None:
        log.info("round 0: the dense model %s trained, copied", source.path.name)
        mask = ones_like(context.weights)
        save_mask(store.mask_path(0), mask, context.provenance(0, mask))
        for path in (source.head_path(0), source.weights_path(0)):
            with atomic_path(folder / path.name) as tmp:
                shutil.copyfile(path, tmp)

    record = RoundRecord.from_json(source.metrics(0), context.data.task.eval_splits)
    granularity = None if context.granularity == WEIGHT else str(context.granularity)
    store.unit(0).seal(replace(record, granularity=granularity), copy)


def _dense_round_alone(config: RunConfig) -> bool:
    """Whether a run's round 0 is only the dense model (no rewinding point saved in it, no early-bird draw)."""
    return config.prune.rewind_step == 0 and config.prune.finder != EARLY_BIRD


def _reopen_sources(store: RunStore, rounds: range, finder: Finder) -> None:
    """A reopened round whose mask or starting head is gone is prepared again from its source round's trained
    weights (IMP's: the previous round): where those were not kept, that round is trained again too (and so on
    back)."""
    for round in reversed(rounds):
        if round > 0 and not store.is_complete(round) and not _inputs_ready(store, round):
            source = finder.source(round)
            if store.is_complete(source) and not store.weights_path(source).exists():
                log.info("round %d is trained again: round %d is made from its weights", source, round)
                store.reopen(source, {})


def _inputs_ready(store: RunStore, round: int) -> bool:
    """The round's mask and starting head are written (they are made before it trains)."""
    return store.mask_path(round).exists() and store.head_path(round).exists()


def _prepare(context: RunContext, finder: Finder, round: int, level: float) -> None:
    """Write a round's inputs before it trains (a resumed or redone round finds them): its mask, drawn at `level` by
    the finder from its source round's trained weights (IMP: the previous round's; round 0: dense), and the head it
    starts from (round 0: the fresh one; later: the head the source round trained, the paper's choice, or the head
    of the moment the finder drew the mask at (early-bird, GMP), or the fresh one with `rewind_head`)."""
    store, prune = context.store, context.config.prune
    if round == 0:
        mask = ones_like(context.weights)
    else:
        load_weights(context.model, str(store.weights_path(finder.source(round))))
        mask = finder.draw(context, round, level, load_mask(store.mask_path(round - 1))[0])
    check_same_mask(mask, f"round {round}")
    head = context.head0 if round == 0 or prune.rewind_head else finder.head(context, round)
    if head is None:
        head = context.head_values()

    def write() -> None:
        save_mask(store.mask_path(round), mask, context.provenance(round, mask))
        save_head(store.head_path(round), head)

    on_main_process(write)


def _rewind(context: RunContext, round: int) -> None:
    """Start weights of a round: θ0 (or θi) for the backbone, the kept weights only (its mask), and the round's
    starting head."""
    store = context.store
    mask = load_mask(store.mask_path(round))[0]
    rewind = store.rewind_path() if round > 0 and context.config.prune.rewind_step else None
    backbone(context.model).load_state_dict(load_file(str(rewind)) if rewind else context.theta0)
    context.model.load_state_dict(load_file(str(store.head_path(round))), strict=False)
    apply_mask(context.weights, mask)


class _SaveRewindPoint(TrainHook):
    """Saves the backbone after step i of round 0: the θi that later rounds rewind to."""

    def __init__(self, step: int, path: Path):
        self.step, self.path = step, path

    def after_step(self, step: int, model: torch.nn.Module) -> None:
        if step == self.step and accelerator().is_main_process:
            state = {k: v.detach().cpu().contiguous() for k, v in backbone(model).state_dict().items()}
            with atomic_path(self.path) as tmp:
                save_file(state, str(tmp))
