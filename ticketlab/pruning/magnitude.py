"""Magnitude pruning: a pure function (weights, current mask, sparsity, rankings, granularity) -> new mask."""

from __future__ import annotations

from typing import Callable, Collection, Mapping, Sequence

import torch

from ..catalog import SCOPES
from ..errors import TicketlabError
from ..masks import Mask
from ..registry import Registry
from .granularity import WEIGHT, Blocks, Granularity, NOfM, block_scores, cap_groups, check_levels, expand_blocks

# "layers" (the default): one global ranking over the transformer layers' matrices, each matrix outside them (the
# pooler, the one path from the encoder to the head) ranked alone at the same sparsity; "global": one ranking of every
# prunable matrix (the BERT-tickets code, which can empty the pooler); "per-matrix": every matrix ranked alone.
Rankings = Sequence[Sequence[str]]  # a partition of the matrices' names: each part is ranked by itself


def magnitude_prune(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    sparsity: float,
    rankings: Rankings | None = None,
    granularity: Granularity = WEIGHT,
) -> Mask:
    """Prune the smallest |w| until exactly round(sparsity * N) weights of each ranking are pruned.

    Ranked in fp32, weights already pruned rank lowest (so masks are nested), ties broken by position.
    `rankings` partitions the names (see `scope_rankings`); None ranks every weight at once. `granularity` (see
    ticketlab.pruning.granularity): blocks are ranked the same way by their L1 norms, round(sparsity * blocks) of
    each ranking pruned; N:M first keeps the N largest |w| of every group, then ranks the weights as above.
    """
    new: Mask = {}
    for names in rankings if rankings is not None else [list(weights)]:
        new.update(_prune_ranking({n: weights[n] for n in names}, {n: mask[n] for n in names}, sparsity, granularity))
    return {name: new[name] for name in weights}


def scope_rankings(scope: str, names: Sequence[str], layers: Collection[str]) -> list[list[str]]:
    """The rankings a scope (SCOPES) makes of the prunable matrices `names`; `layers`: those inside the layer stack."""
    check_scope(scope)
    if scope == "global":
        return [list(names)]
    if scope == "per-matrix":
        return [[name] for name in names]
    inside = [name for name in names if name in layers]
    return ([inside] if inside else []) + [[name] for name in names if name not in layers]


def check_scope(scope: str) -> None:
    """Raise for a scope not in SCOPES."""
    if scope not in SCOPES:
        raise TicketlabError(f"unknown pruning scope {scope!r}; known: {', '.join(SCOPES)}")


def _prune_ranking(
    weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], sparsity: float, granularity: Granularity
) -> Mask:
    """One ranking pruned at its granularity: blocks ranked by their L1 norms, or N:M groups capped first."""
    if isinstance(granularity, Blocks):
        scores, kept = block_scores(weights, mask, granularity)
        pruned = _prune_together(scores, kept, sparsity)
        return {n: expand_blocks(pruned[n], granularity, mask[n].shape) for n in weights}
    if isinstance(granularity, NOfM):
        check_levels(granularity, [sparsity])
        mask = cap_groups(weights, mask, granularity)
    return _prune_together(weights, mask, sparsity)


def _prune_together(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], sparsity: float) -> Mask:
    names = list(weights)
    scores = torch.cat([weights[n].detach().to("cpu", torch.float32).abs().flatten() for n in names])
    kept = torch.cat([mask[n].to("cpu").flatten() for n in names])
    prune_count = round(sparsity * scores.numel())
    already = int((~kept).sum())
    if prune_count < already:
        raise TicketlabError(
            f"cannot prune to sparsity {sparsity:g}: {already} of the {scores.numel()} ranked are pruned already"
        )
    scores[~kept] = -1.0  # below every |w|: pruned weights stay pruned
    order = torch.argsort(scores, stable=True)
    flat = torch.ones_like(kept)
    flat[order[:prune_count]] = False
    return {n: part.view_as(mask[n]).clone() for n, part in zip(names, flat.split([weights[n].numel() for n in names]))}


PRUNING_METHODS: Registry[Callable[..., Mask]] = Registry("pruning method")
PRUNING_METHODS.register("magnitude")(magnitude_prune)
