"""Random pruning: the lottery's null hypothesis, a mask that ignores the weights."""

from __future__ import annotations

from typing import Mapping

import torch

from ..masks import Mask
from .magnitude import magnitude_prune


def random_prune(
    weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], sparsity: float, scope: str, generator: torch.Generator
) -> Mask:
    """Prune uniformly at random to exactly round(sparsity * N) weights (per matrix with scope "per-matrix").

    Magnitude pruning of random scores: the same exact counts, nesting and scopes as IMP, only the ranking differs.
    """
    scores = {name: torch.rand(w.shape, generator=generator) for name, w in weights.items()}
    return magnitude_prune(scores, mask, sparsity, scope=scope)
