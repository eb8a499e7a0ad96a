"""Magnitude pruning: a pure function (weights, current mask, sparsity) -> new mask."""

from __future__ import annotations

from typing import Mapping

import torch

from ..errors import TicketlabError
from ..masks import Mask

SCOPES = ("global", "per-matrix")


def magnitude_prune(
    weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], sparsity: float, scope: str = "global"
) -> Mask:
    """Prune the smallest |w| until exactly round(sparsity * N) weights are pruned.

    Ranked in fp32, weights already pruned rank lowest (so masks are nested), ties broken by position.
    scope "global" ranks all weights at once (the BERT-tickets code); "per-matrix" prunes each matrix to `sparsity`.
    """
    check_scope(scope)
    if scope == "global":
        return _prune_together(weights, mask, sparsity)
    new: Mask = {}
    for name in weights:
        new.update(_prune_together({name: weights[name]}, {name: mask[name]}, sparsity))
    return new


def check_scope(scope: str) -> None:
    """Raise for a scope other than "global" or "per-matrix"."""
    if scope not in SCOPES:
        raise TicketlabError(f"unknown pruning scope {scope!r}; known: {', '.join(SCOPES)}")


def _prune_together(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], sparsity: float) -> Mask:
    names = list(weights)
    scores = torch.cat([weights[n].detach().to("cpu", torch.float32).abs().flatten() for n in names])
    kept = torch.cat([mask[n].to("cpu").flatten() for n in names])
    prune_count = round(sparsity * scores.numel())
    already = int((~kept).sum())
    if prune_count < already:
        raise TicketlabError(f"cannot prune to sparsity {sparsity:g}: {already} of {scores.numel()} weights are pruned already")
    scores[~kept] = -1.0  # below every |w|: pruned weights stay pruned
    order = torch.argsort(scores, stable=True)
    flat = torch.ones_like(kept)
    flat[order[:prune_count]] = False
    return {n: part.view_as(mask[n]).clone() for n, part in zip(names, flat.split([weights[n].numel() for n in names]))}
