"""Gradual magnitude pruning (Zhu & Gupta 2017) in one training run: from θ0 the run's recipe trains once while the
smallest weights are pruned on the cubic schedule (ticketlab.pruning.cubic_schedule), the mask enforced in between.
Every level of the run's schedule that it crosses yields a mask, the magnitude pruning of the weights at that step
to exactly that level (so the masks are nested), and the task head of that step; each is a round of the run, trained
from θ0 and that head as its ticket (so its ticket depends on the pruning run alone).

The run is a unit of the run's store beside the rounds (search/round_00), resumable from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..arms import GMP
from ..masks import Mask, ones_like, save_mask, sparsity
from ..pruning import cubic_schedule
from ..pruning.granularity import NOfM
from ..store import RunStore, make
from ..store.records import GmpSearchRecord
from ..train.hooks import MaskEnforcer, TrainHook
from ..train.loop import total_steps
from .context import RunContext, save_head
from .early_bird import Head

LEVEL_SLACK = 1e-9  # a schedule's sparsity equal to a level, up to float noise, crosses it


def gmp_mask_path(store: RunStore, round: int) -> Path:
    """Where the pruning run keeps the mask of round `round`'s level."""
    return store.searches().round_dir(0) / f"mask_{round:02d}.safetensors"


def gmp_head_path(store: RunStore, round: int) -> Path:
    """Where the pruning run keeps the task head of the step it took round `round`'s mask at."""
    return store.searches().round_dir(0) / f"head_{round:02d}.safetensors"


class GradualPruning(TrainHook):
    """Prunes `weights` to `schedule[step]` after each step it names (`prune`: (mask, sparsity) -> the weights'
    magnitude mask), taking the mask of every level of `levels` (round -> sparsity) crossed on the way and the task
    head then (`head`: its values now); enforces the mask in between (as ticketlab.train.hooks.MaskEnforcer)."""

    def __init__(
        self,
        weights: Mapping[str, torch.nn.Parameter],
        schedule: Mapping[int, float],
        levels: Mapping[int, float],
        prune: Callable[[Mask, float], Mask],
        head: Callable[[], Head],
    ):
        self.weights, self.schedule, self.levels, self.prune, self.head = weights, schedule, levels, prune, head
        self.mask: Mask = ones_like(weights)
        self.found: dict[int, Mask] = {}  # round -> its mask
        self.heads: dict[int, Head] = {}  # round -> the head when its mask was taken
        self._enforce()

    def _enforce(self) -> None:
        self.enforcer = MaskEnforcer(list(self.weights.values()), [self.mask[n] for n in self.weights])
        self.enforcer.after_step(0, None)

    def after_backward(self, model: torch.nn.Module) -> None:
        self.enforcer.after_backward(model)

    def after_step(self, step: int, model: torch.nn.Module) -> None:
        self.enforcer.after_step(step, model)
        if step not in self.schedule:
            return
        target = self.schedule[step]
        for round, level in sorted(self.levels.items()):
            if round not in self.found and level <= target + LEVEL_SLACK:
                self.mask = self.found[round] = self.prune(self.mask, level)
                self.heads[round] = self.head()
        if target > sparsity(self.mask) + LEVEL_SLACK:
            self.mask = self.prune(self.mask, target)
        self._enforce()

    def state_dict(self) -> dict[str, Any]:
        return {"mask": self.mask, "found": self.found, "heads": self.heads}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mask, self.found, self.heads = dict(state["mask"]), dict(state["found"]), dict(state["heads"])
        self._enforce()


def run_gmp_search(context: RunContext) -> None:
    """The pruning run of a gmp run's store (resuming its checkpoint): it writes the mask of every pruned round's level
    and the head it was taken with (see `gmp_mask_path`, `gmp_head_path`)."""
    searches, settings = context.store.searches(), context.config.prune
    steps = total_steps(len(context.data.features["train"]), context.config.train)
    initial = context.granularity.least_sparsity if isinstance(context.granularity, NOfM) else 0.0  # N:M's constraint
    schedule = cubic_schedule(
        steps, settings.gmp_start, settings.gmp_end, settings.gmp_prunings, settings.sparsity, initial
    )
    hook = GradualPruning(
        context.weights, schedule, _levels(context.levels), context.prune_by_magnitude, context.head_values
    )

    def trained() -> GmpSearchRecord:
        result = context.run_training(context.model, searches.checkpoint_path(0), [hook], "gmp · pruning run", 0)
        return GmpSearchRecord(
            steps=result.steps,
            train_loss=result.train_loss,
            train_time_s=result.time_s,
            sparsity=sparsity(hook.mask),
            schedule={str(step): level for step, level in schedule.items()},
            cost=result.cost(0.0),
        )

    def keep(folder: Path) -> None:
        for round, mask in hook.found.items():
            provenance = {**context.provenance(round, mask), "search": GMP}
            save_mask(gmp_mask_path(context.store, round), mask, provenance)
            save_head(gmp_head_path(context.store, round), hook.heads[round], provenance)

    make(searches.unit(0), start=context.start_from_theta0, train=trained, keep=keep)


def _levels(levels: Sequence[float]) -> dict[int, float]:
    return {round: level for round, level in enumerate(levels) if round > 0}
