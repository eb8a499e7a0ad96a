"""The transformer layer layout structured pruning works on (BERT, RoBERTa, ELECTRA, MiniLM), and the surgery on
one layer: keep some attention heads and FFN neurons, cut the rest out of the weights.

A structure holds, for every transformer layer i, "heads.{i}" (one bool per attention head) and "ffn.{i}"
(one bool per FFN intermediate neuron); True = kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from ..errors import TicketlabError
from ..models import backbone
from .draw import Structure

LAYOUT = (
    "encoder.layer[i].attention.self.{query,key,value}, .attention.output.dense, .intermediate.dense, .output.dense"
)


@dataclass(frozen=True)
class LayerModules:
    """The modules of one transformer layer that structured pruning touches."""

    attention: nn.Module  # the self-attention module: num_attention_heads, attention_head_size, all_head_size
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attention_output: nn.Linear  # its input is the heads' outputs side by side
    ffn_in: nn.Linear
    ffn_out: nn.Linear  # its input is the FFN neurons' activations
    head_size: int


def layer_modules(model: nn.Module) -> list[LayerModules]:
    """Per transformer layer, the modules structured pruning touches (BERT, RoBERTa, ELECTRA, MiniLM layouts)."""
    try:
        layers = backbone(model).encoder.layer
        found = [
            LayerModules(
                attention=layer.attention.self,
                query=layer.attention.self.query,
                key=layer.attention.self.key,
                value=layer.attention.self.value,
                attention_output=layer.attention.output.dense,
                ffn_in=layer.intermediate.dense,
                ffn_out=layer.output.dense,
                head_size=int(layer.attention.self.attention_head_size),
            )
            for layer in layers
        ]
    except (AttributeError, TypeError):
        found = []
    linear = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")
    if not found or not all(isinstance(getattr(m, name), nn.Linear) for m in found for name in linear):
        raise TicketlabError(f"{type(model).__name__}: structured pruning needs the BERT layer layout ({LAYOUT})")
    return found


def layer_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """(attention heads, FFN neurons) of each layer, as the weights are now (compacted layers differ)."""
    return [(m.query.out_features // m.head_size, m.ffn_in.out_features) for m in layer_modules(model)]


def full_structure(model: nn.Module) -> Structure:
    """The structure that keeps every head and every FFN neuron."""
    structure: Structure = {}
    for i, (heads, neurons) in enumerate(layer_shapes(model)):
        structure[f"heads.{i}"] = torch.ones(heads, dtype=torch.bool)
        structure[f"ffn.{i}"] = torch.ones(neurons, dtype=torch.bool)
    return structure


def check_keys(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], shapes: list[tuple[int, int]], what: str, complete: bool
) -> None:
    """One-line errors for names that are no layer of the model, missing layers, or wrong lengths."""
    where = f"{what} does not fit this {type(model).__name__} ({len(shapes)} layers)"
    expected = {
        f"{kind}.{i}": size
        for i, (heads, neurons) in enumerate(shapes)
        for kind, size in (("heads", heads), ("ffn", neurons))
    }
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise TicketlabError(f"{where}: {extra[0]!r} is not heads.i or ffn.i of one of its layers")
    missing = sorted(set(expected) - set(tensors), key=lambda name: (int(name.split(".")[1]), name))
    if complete and missing:
        raise TicketlabError(f"{where}: no entry for {missing[0]} ({len(missing)} missing)")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != (expected[name],):
            unit = "heads" if name.startswith("heads.") else "FFN neurons"
            raise TicketlabError(
                f"{where}: {name} has shape {tuple(tensor.shape)}, "
                f"layer {name.split('.')[1]} has {expected[name]} {unit}"
            )


def shrink_layer(layer: LayerModules, heads: torch.Tensor, neurons: torch.Tensor, ffn_padding: int = 0) -> None:
    """Keep only these heads (indices) and FFN neurons (indices) of one layer, then add `ffn_padding` zero neurons."""
    rows = (heads.unsqueeze(-1) * layer.head_size + torch.arange(layer.head_size)).flatten()
    for linear in (layer.query, layer.key, layer.value):
        _keep(linear, rows, dim=0)
    _keep(layer.attention_output, rows, dim=1)
    layer.attention.num_attention_heads = len(heads)
    layer.attention.all_head_size = len(rows)
    _keep(layer.ffn_in, neurons, dim=0, padding=ffn_padding)
    _keep(layer.ffn_out, neurons, dim=1, padding=ffn_padding)


def _keep(linear: nn.Linear, index: torch.Tensor, dim: int, padding: int = 0) -> None:
    """Keep the output rows (dim 0, with their biases) or input columns (dim 1) `index` of a Linear, in place,
    and append `padding` zero rows or columns."""
    weight = linear.weight
    index = index.to(weight.device)
    linear.weight = nn.Parameter(
        _pad(weight.detach().index_select(dim, index), dim, padding), requires_grad=weight.requires_grad
    )
    if dim == 0:
        if linear.bias is not None:
            bias = _pad(linear.bias.detach().index_select(0, index), 0, padding)
            linear.bias = nn.Parameter(bias, requires_grad=linear.bias.requires_grad)
        linear.out_features = len(index) + padding
    else:
        linear.in_features = len(index) + padding


def _pad(tensor: torch.Tensor, dim: int, padding: int) -> torch.Tensor:
    if not padding:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = padding
    return torch.cat([tensor, tensor.new_zeros(shape)], dim)
