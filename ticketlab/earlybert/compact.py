"""Structured tickets made physical: whole attention heads and FFN neurons removed from a BERT-family model, and the
unstructured mask that prunes the same weights. `compact` cuts the pruned rows and columns out of the weights, so
the smaller model computes exactly what the masked model (`scale_structures` with the structure as 0/1) does."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..errors import TicketlabError
from ..masks import Mask, ones_like
from ..models import prunable_weights
from .hf import record_shapes
from .layers import check_keys, layer_modules, layer_shapes, shrink_layer


def structure_mask(model: nn.Module, structure: Mapping[str, torch.Tensor]) -> Mask:
    """The unstructured mask, over `prunable_weights(model)`, that prunes what the structure prunes: the rows of
    Q, K, V and the attention-output columns of pruned heads, the FFN-in rows and FFN-out columns of pruned neurons.
    Every other weight (the pooler) is kept."""
    layers = layer_modules(model)
    _check_structure(model, structure)
    weights = prunable_weights(model)
    name_of = {id(w): name for name, w in weights.items()}
    mask = ones_like(weights)
    for i, layer in enumerate(layers):
        pruned_rows = ~structure[f"heads.{i}"].cpu().repeat_interleave(layer.head_size)
        for linear in (layer.query, layer.key, layer.value):
            mask[name_of[id(linear.weight)]][pruned_rows, :] = False
        mask[name_of[id(layer.attention_output.weight)]][:, pruned_rows] = False
        pruned_neurons = ~structure[f"ffn.{i}"].cpu()
        mask[name_of[id(layer.ffn_in.weight)]][pruned_neurons, :] = False
        mask[name_of[id(layer.ffn_out.weight)]][:, pruned_neurons] = False
    return mask


@torch.no_grad()
def compact(model: nn.Module, structure: Mapping[str, torch.Tensor], ffn_multiple_of: int = 1) -> nn.Module:
    """Remove the pruned heads and FFN neurons from `model`, in place, and return it.

    The smaller model computes what the masked model computes. Its config records each layer's shapes, and a BERT,
    RoBERTa or ELECTRA model of the four supported tasks (base, sequence classification, masked LM, question
    answering) becomes its compact class, so `save_compact` (or save_pretrained) writes a folder that loads back.
    `ffn_multiple_of` > 1 pads each layer's FFN with all-zero neurons up to a multiple of it: the outputs stay the
    same, and matrix kernels run faster on such widths (8 on AVX2 CPUs; see benchmarks/RESULTS.md).
    """
    if not isinstance(ffn_multiple_of, int) or ffn_multiple_of < 1:
        raise TicketlabError(f"ffn_multiple_of must be a positive integer, got {ffn_multiple_of!r}")
    layers = layer_modules(model)
    _check_structure(model, structure)
    for i, layer in enumerate(layers):
        heads = structure[f"heads.{i}"].cpu().nonzero().flatten()
        neurons = structure[f"ffn.{i}"].cpu().nonzero().flatten()
        shrink_layer(layer, heads, neurons, ffn_padding=-len(neurons) % ffn_multiple_of)
    record_shapes(model)
    return model


def _check_structure(model: nn.Module, structure: Mapping[str, torch.Tensor]) -> None:
    check_keys(model, structure, layer_shapes(model), "structure", complete=True)
    for name, kept in structure.items():
        if kept.dtype != torch.bool:
            raise TicketlabError(f"structure {name} is {kept.dtype}; a structure holds bool tensors (True = kept)")
        if not kept.any():
            what = "head" if name.startswith("heads.") else "FFN neuron"
            raise TicketlabError(
                f"structure prunes every {what} of layer {name.split('.')[1]}; each layer keeps at least one"
            )
