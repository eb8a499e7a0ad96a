"""The control experiments: each is a branch of a lottery run that changes one thing about an IMP ticket.

A control gives, for an IMP round at sparsity s, the mask to train and the start values of the prunable matrices
(everything else starts as IMP's round does: θ0 for the backbone, that round's starting head). Both are pure
functions of the run they branch from and a seeded generator. The masks a control prunes itself (one-shot, random)
are made at the run's granularity, with its rankings (random: all weights, or each matrix, at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from . import catalog
from .arms import INVERTED, NOISE, ONE_SHOT, RANDOM, RANDOM_PER_MATRIX, REINIT, SHUFFLE
from .masks import Mask, ones_like
from .pruning import Granularity, Rankings, magnitude_prune, random_prune
from .registry import Registry

Weights = dict[str, torch.Tensor]
NOISE_SCALE = 0.5  # "noise": Gaussian noise with this many standard deviations of each matrix's θ0


class Parent(Protocol):
    """What a control reads of the lottery run it branches from (prunable weights, named as in masks)."""

    rankings: Rankings  # the run's pruning rankings (its scope, see ticketlab.pruning.scope_rankings)
    granularity: Granularity  # what the run prunes together (ticketlab.pruning.granularity)

    def imp_mask(self, round: int) -> Mask: ...

    def round_at(self, level: float) -> int | None:
        """The IMP round at this sparsity level, if the schedule has one."""

    def dense_weights(self) -> Weights:
        """The fine-tuned dense model's weights (round 0, trained)."""

    def initial_weights(self, generator: torch.Generator) -> Weights:
        """Fresh weights from the model's own initializer."""


@dataclass(frozen=True)
class Control:
    description: str
    mask: Callable[[Parent, int, float, torch.Generator], Mask | None]  # (run, round, level, rng); None: no such mask
    weights: Callable[[Weights, Parent, torch.Generator], Weights] = lambda theta0, parent, rng: theta0


CONTROLS: Registry[Control] = Registry("control experiment", catalog.CONTROLS)


def _imp(parent: Parent, round: int, level: float, rng: torch.Generator) -> Mask:
    return parent.imp_mask(round)


def _one_shot(parent: Parent, round: int, level: float, rng: torch.Generator) -> Mask:
    dense = parent.dense_weights()
    return magnitude_prune(dense, ones_like(dense), level, parent.rankings, parent.granularity)


def _random(per_matrix: bool) -> Callable[[Parent, int, float, torch.Generator], Mask]:
    def mask(parent: Parent, round: int, level: float, rng: torch.Generator) -> Mask:
        shapes = parent.imp_mask(0)
        rankings = [[name] for name in shapes] if per_matrix else None
        return random_prune(shapes, shapes, level, rng, rankings, parent.granularity)

    return mask


def _inverted(parent: Parent, round: int, level: float, rng: torch.Generator) -> Mask | None:
    complement = parent.round_at(1.0 - level)
    if complement is None:
        return None
    return {name: ~kept for name, kept in parent.imp_mask(complement).items()}


def _reinitialized(theta0: Weights, parent: Parent, rng: torch.Generator) -> Weights:
    return parent.initial_weights(rng)


def _shuffled(theta0: Weights, parent: Parent, rng: torch.Generator) -> Weights:
    return {name: w.flatten()[torch.randperm(w.numel(), generator=rng)].view_as(w) for name, w in theta0.items()}


def _noisy(theta0: Weights, parent: Parent, rng: torch.Generator) -> Weights:
    return {
        name: w + NOISE_SCALE * w.float().std() * torch.randn(w.shape, generator=rng).to(w.dtype)
        for name, w in theta0.items()
    }


CONTROLS.register(ONE_SHOT)(
    Control("one-shot magnitude pruning of the fine-tuned dense weights, rewound to θ0", _one_shot)
)
CONTROLS.register(RANDOM)(Control("a random mask, uniform over all prunable weights", _random(per_matrix=False)))
CONTROLS.register(RANDOM_PER_MATRIX)(
    Control("a random mask, every matrix at the same sparsity", _random(per_matrix=True))
)
CONTROLS.register(REINIT)(
    Control("the IMP mask; kept weights drawn afresh from the model's initializer", _imp, _reinitialized)
)
CONTROLS.register(SHUFFLE)(Control("the IMP mask; θ0 shuffled within each matrix", _imp, _shuffled))
CONTROLS.register(NOISE)(
    Control(f"the IMP mask; θ0 plus Gaussian noise of {NOISE_SCALE:g} std of each matrix", _imp, _noisy)
)
CONTROLS.register(INVERTED)(
    Control("the complement of the IMP mask at sparsity 1 - s (IMP's kept weights pruned)", _inverted)
)
