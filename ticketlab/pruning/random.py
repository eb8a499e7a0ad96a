"""Random pruning: the lottery's null hypothesis, a mask that ignores the weights."""

from __future__ import annotations

from typing import Mapping

import torch

from ..masks import Mask
from .granularity import WEIGHT, Granularity
from .magnitude import Rankings, magnitude_prune


def random_prune(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    sparsity: float,
    generator: torch.Generator,
    rankings: Rankings | None = None,
    granularity: Granularity = WEIGHT,
) -> Mask:
    """Prune uniformly at random to exactly round(sparsity * N) weights of each ranking (None: all weights at once).

    Magnitude pruning of random scores: the same exact counts, nesting, rankings and granularity as IMP, only the
    order differs (blocks, and each group's kept N, are drawn uniformly too).
    """
    scores = {name: torch.rand(w.shape, generator=generator) for name, w in weights.items()}
    return magnitude_prune(scores, mask, sparsity, rankings, granularity)
