"""Wanda pruning (Sun et al. 2023): score each weight by |w| times the L2 norm of its input feature over calibration
batches, and prune the lowest scores of every output row. Pure functions: norms -> scores -> mask."""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from ..errors import TicketlabError
from ..masks import Mask
from ..train.batches import Forward, call_model
from .granularity import WEIGHT, Blocks, Granularity, NOfM, block_scores, cap_groups, check_levels, expand_blocks

_MODULES = (nn.Linear, nn.Conv2d)  # what Wanda scores: a weight read along dim 1, one input feature at a time
PADDING_MASK = "attention_mask"  # a text batch's (batch, length) mask of its real tokens: padding does not count


def input_norms(
    model: nn.Module,
    weights: Mapping[str, nn.Parameter],
    batches: Iterable[dict[str, torch.Tensor]],
    forward: Forward = call_model,
) -> dict[str, torch.Tensor]:
    """Per weight, the L2 norm (fp32, CPU) of each input feature of its nn.Linear or nn.Conv2d over every position of
    every batch run through `forward` (in eval mode, without gradients; summed in fp64 on CPU). A batch with a
    PADDING_MASK counts only its real tokens in the inputs laid out (batch, length, features), so the norms do not
    depend on how the batches were padded.

    Shapes: (in_features,) for a Linear, (in_channels,) for a Conv2d. A weight whose module never ran is refused.
    """
    modules = _modules_of(model, weights)
    squares: dict[str, torch.Tensor] = {}
    real: dict[str, torch.Tensor | None] = {}  # the running batch's PADDING_MASK
    handles = [
        owner.register_forward_pre_hook(_accumulator(name, owner, squares, real)) for name, owner in modules.items()
    ]
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                real["tokens"] = batch.get(PADDING_MASK)
                forward(model, batch, None)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    unseen = [name for name in weights if name not in squares]
    if unseen:
        raise TicketlabError(f"wanda: {unseen[0]} saw no calibration input ({len(unseen)} weights' modules never ran)")
    return {name: squares[name].sqrt().float() for name in weights}


def wanda_scores(weights: Mapping[str, torch.Tensor], norms: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """|w| times the norm of the input feature it reads (dim 1 of a Linear's or a conv's weight), fp32 on CPU."""
    scores = {}
    for name, weight in weights.items():
        norm = norms[name].to("cpu", torch.float32)
        if norm.numel() != weight.shape[1]:
            raise TicketlabError(
                f"wanda: {name} reads {weight.shape[1]} input features but has {norm.numel()} norms (a grouped conv?)"
            )
        feature_shape = (1, -1) + (1,) * (weight.dim() - 2)
        scores[name] = weight.detach().to("cpu", torch.float32).abs() * norm.reshape(feature_shape)
    return scores


def row_prune(
    scores: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    sparsity: float,
    granularity: Granularity = WEIGHT,
) -> Mask:
    """Prune exactly round(sparsity * row length) of every output row (dim 0, the rest flattened), lowest score first.

    Weights already pruned rank lowest (so masks are nested), ties broken by position. Blocks: each block row ranks
    its blocks by their summed scores; N:M: each group first keeps its N highest scores, then rows rank as above.
    """
    if isinstance(granularity, Blocks):
        grid, kept = block_scores(scores, mask, granularity)
        pruned = {name: _prune_rows(name, grid[name], kept[name], sparsity) for name in scores}
        return {name: expand_blocks(pruned[name], granularity, mask[name].shape) for name in scores}
    if isinstance(granularity, NOfM):
        check_levels(granularity, [sparsity])
        mask = cap_groups(scores, mask, granularity)
    return {name: _prune_rows(name, scores[name], mask[name], sparsity) for name in scores}


def _modules_of(model: nn.Module, weights: Mapping[str, nn.Parameter]) -> dict[str, nn.Module]:
    """The nn.Linear or nn.Conv2d of `model` that owns each weight (found by identity, not by name)."""
    owners = {id(module.weight): module for _, module in model.named_modules() if isinstance(module, _MODULES)}
    strangers = [name for name, weight in weights.items() if id(weight) not in owners]
    if strangers:
        raise TicketlabError(f"wanda: {strangers[0]} is not the weight of an nn.Linear or nn.Conv2d of the model")
    return {name: owners[id(weight)] for name, weight in weights.items()}


def _accumulator(
    name: str, module: nn.Module, squares: dict[str, torch.Tensor], real: dict[str, torch.Tensor | None]
) -> Callable[..., None]:
    """A forward pre-hook adding the squares of each input feature of `module` to squares[name] (fp64, CPU), over the
    real tokens (real["tokens"]) where its input has the padding mask's (batch, length) positions."""
    feature_dim = -1 if isinstance(module, nn.Linear) else -3  # a Linear's features come last, a conv's channels

    def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        features = inputs[0].detach().to("cpu", torch.float64).movedim(feature_dim, -1)
        tokens = real["tokens"]
        if tokens is not None and features.shape[:-1] == tokens.shape:
            features = features[tokens.to("cpu").bool()]  # (real tokens, features)
        batch_squares = features.reshape(-1, features.shape[-1]).square().sum(0)
        squares[name] = squares[name] + batch_squares if name in squares else batch_squares

    return hook


def _prune_rows(name: str, scores: torch.Tensor, kept: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The mask of `kept`'s shape pruning the round(sparsity * width) lowest scores of every row of the (shape[0], -1)
    matrix, the already pruned first."""
    matrix = scores.detach().to("cpu", torch.float32).reshape(scores.shape[0], -1).clone()
    kept_matrix = kept.to("cpu").reshape(matrix.shape)
    prune_count = round(sparsity * matrix.shape[1])
    already = int((~kept_matrix).sum(1).max())
    if prune_count < already:
        raise TicketlabError(
            f"cannot prune {name} to sparsity {sparsity:g} per row: a row has {already} of its {matrix.shape[1]} "
            "ranked pruned already"
        )
    matrix[~kept_matrix] = -1.0  # below every score (|w| x norm >= 0): pruned weights stay pruned
    lowest = torch.argsort(matrix, dim=1, stable=True)[:, :prune_count]
    return torch.ones_like(kept_matrix).scatter(1, lowest, False).reshape(kept.shape)
