"""Random pruning: the lottery's null hypothesis, a mask that ignores the weights."""

from __future__ import annotations

from typing import Mapping

import torch

from ..masks import Mask
from .magnitude import Rankings, magnitude_prune


def random_prune(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    sparsity: float,
    generator: torch.Generator,
    rankings: Rankings | None = None,
) -> Mask:
    """Prune uniformly at random to exactly round(sparsity * N) weights of each ranking (None: all weights at once).

    Magnitude pruning of random scores: the same exact counts, nesting and rankings as IMP, only the order differs.
    """
    scores = {name: torch.rand(w.shape, generator=generator) for name, w in weights.items()}
    return magnitude_prune(scores, mask, sparsity, rankings)
