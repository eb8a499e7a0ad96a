"""Structured tickets (EarlyBERT): whole attention heads and FFN neurons, drawn from slimming coefficients (the
early-bird test that says when the drawn ticket has stopped changing is ticketlab.pruning.settle's).

A structure is a Mask with, for every transformer layer i, "heads.{i}" (one bool per attention head) and
"ffn.{i}" (one bool per FFN neuron); True = kept. Drawing is a pure function: scores in, structure out.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..errors import TicketlabError
from ..masks import Mask

Structure = Mask
Shapes = Sequence[tuple[int, int]]  # (heads, FFN neurons) of each layer


def structure_shapes(structure: Mapping[str, torch.Tensor]) -> list[tuple[int, int]]:
    """(heads, FFN neurons) of each layer of a structure, or of scores keyed like one."""
    layers = len(structure) // 2
    expected = {f"{kind}.{i}" for i in range(layers) for kind in ("heads", "ffn")}
    if set(structure) != expected:
        raise TicketlabError(
            f"not a structure of whole layers (heads.i and ffn.i for i = 0..n-1): {sorted(structure)[:4]}"
        )
    return [(structure[f"heads.{i}"].numel(), structure[f"ffn.{i}"].numel()) for i in range(layers)]


def check_ratios(shapes: Shapes, heads: float, ffn: float) -> None:
    """One-line errors for ratios outside (0, 1), or a head ratio that would empty a layer."""
    for name, value in (("heads", heads), ("ffn", ffn)):
        if not 0.0 < value < 1.0:
            raise TicketlabError(f"--{name} is the fraction pruned and must lie in (0, 1), got {value:g}")
    for layer, (count, _) in enumerate(shapes):
        if round(heads * count) >= count:
            raise TicketlabError(
                f"--heads {heads:g} prunes all {count} heads of layer {layer}; each layer keeps at least one"
            )


def draw_structure(scores: Mapping[str, torch.Tensor], heads: float, ffn: float) -> Structure:
    """The ticket the scores (slimming coefficients, keyed like a structure) give: in every layer the
    round(heads * H) heads of smallest |score| go; over all layers together the round(ffn * N) FFN neurons of
    smallest |score| go, though every layer keeps its best one. Ties go to the lower index."""
    shapes = structure_shapes(scores)
    check_ratios(shapes, heads, ffn)
    structure = {
        f"heads.{i}": _keep_largest(scores[f"heads.{i}"].abs(), h - round(heads * h)) for i, (h, _) in enumerate(shapes)
    }
    neurons = [scores[f"ffn.{i}"].detach().abs().float().clone() for i in range(len(shapes))]
    for layer in neurons:
        layer[layer.argmax()] = float("inf")  # each layer's best neuron stays
    total = sum(n for _, n in shapes)
    kept = _keep_largest(torch.cat(neurons), max(total - round(ffn * total), len(shapes)))
    for i, part in enumerate(kept.split([n for _, n in shapes])):
        structure[f"ffn.{i}"] = part
    return structure


def random_structure(like: Mapping[str, torch.Tensor], generator: torch.Generator) -> Structure:
    """A structure keeping as many heads and FFN neurons in every layer as `like`, chosen uniformly at random.
    Drawn in one fixed order (every layer's heads, then every layer's neurons), whatever the order of `like`'s keys."""
    layers = range(len(structure_shapes(like)))
    names = [f"heads.{i}" for i in layers] + [f"ffn.{i}" for i in layers]
    return {
        name: _keep_largest(torch.rand(like[name].shape, generator=generator), int(like[name].sum())) for name in names
    }


def _keep_largest(values: torch.Tensor, count: int) -> torch.Tensor:
    order = torch.sort(values.detach().cpu().float(), descending=True, stable=True).indices
    keep = torch.zeros(values.numel(), dtype=torch.bool)
    keep[order[:count]] = True
    return keep
