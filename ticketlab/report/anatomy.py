"""What a ticket keeps, read off the anatomy of a BERT-family encoder (per layer, matrix type and attention head) or
of a ResNet (per residual block and conv).

Pure functions over masks named as ticketlab names prunable weights, relative to the backbone:
``encoder.layer.3.attention.self.query.weight`` (also ``key``, ``value``),
``encoder.layer.3.attention.output.dense.weight``,
``encoder.layer.3.intermediate.dense.weight``, ``encoder.layer.3.output.dense.weight`` and ``pooler.dense.weight``;
a ResNet's ``layer2.0.conv1.weight`` (block 0 of stage 2; also ``conv2``, ``conv3``) and
``layer2.0.downsample.0.weight``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations, combinations_with_replacement, product
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import TicketlabError
from ..masks import Mask, iou
from ..models import config_values, is_resnet, resolve_model
from ..models.matrices import ATTENTION, CONV_TYPES, MATRIX_TYPES, matrix_of

ALL = "all"


@dataclass(frozen=True)
class Grid:
    """A labelled table of numbers, as a heatmap shows it; NaN where there is nothing."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    values: np.ndarray


def layer_type_sparsity(mask: Mapping[str, torch.Tensor]) -> Grid:
    """Sparsity per layer (rows "0", "1", ...; a ResNet's blocks "1.0", "1.1", ...) and matrix type (columns), with
    an "all" row and column.

    The pooler belongs to no layer: it shows in the "all" row only.
    """
    kept: dict[tuple, int] = defaultdict(int)
    total: dict[tuple, int] = defaultdict(int)
    for name, m in mask.items():
        if (where := matrix_of(name)) is None:
            continue
        layer, kind = where
        for key in product((ALL,) if layer is None else (layer, ALL), (kind, ALL)):
            kept[key] += np.count_nonzero(m.numpy())
            total[key] += m.numel()
    if not total:
        raise TicketlabError("the mask names no weight of a BERT-family encoder or a ResNet")
    rows = [
        *sorted(
            {layer for layer, _ in total if layer != ALL}, key=lambda layer: tuple(map(int, str(layer).split(".")))
        ),
        ALL,
    ]
    columns = [*(kind for kind in (*MATRIX_TYPES, *CONV_TYPES) if (ALL, kind) in total), ALL]
    values = np.array([[1 - kept[r, c] / total[r, c] if (r, c) in total else np.nan for c in columns] for r in rows])
    return Grid(tuple(map(str, rows)), tuple(columns), values)


def head_kept(mask: Mapping[str, torch.Tensor], heads: int) -> Grid:
    """Fraction of weights kept in each attention head: rows are layers, columns heads.

    Head h owns rows h*d:(h+1)*d of the query, key and value matrices and those columns of the attention output,
    d = hidden / heads.
    """
    kept: dict[int, np.ndarray] = {}
    total: dict[int, int] = defaultdict(int)
    for name, m in mask.items():
        where = matrix_of(name)
        if where is None or where[1] not in ATTENTION:
            continue
        layer, kind = where
        by_head = m.numpy().T if kind == "attention output" else m.numpy()  # a head's slice along the first dimension
        if by_head.shape[0] % heads:
            raise TicketlabError(
                f"{name}: {by_head.shape[0]} {'columns' if kind == 'attention output' else 'rows'} "
                f"do not split into {heads} heads"
            )
        chunks = by_head.reshape(heads, -1)
        kept[layer] = kept.get(layer, 0) + np.count_nonzero(chunks, axis=1)
        total[layer] += chunks.shape[1]
    if not kept:
        raise TicketlabError("the mask names no attention weight of a BERT-family encoder")
    layers = sorted(kept)
    values = np.stack([kept[layer] / total[layer] for layer in layers])
    return Grid(tuple(map(str, layers)), tuple(map(str, range(heads))), values)


def overlap_grid(tickets: Mapping[str, Sequence[Mask]]) -> Grid:
    """Mean IoU between the tickets of every two tasks; on the diagonal, between different tickets (seeds) of one
    task."""
    names = tuple(tickets)
    values = np.full((len(names), len(names)), np.nan)
    for i, j in combinations_with_replacement(range(len(names)), 2):
        pairs = list(combinations(tickets[names[i]], 2) if i == j else product(tickets[names[i]], tickets[names[j]]))
        if pairs:
            values[i, j] = values[j, i] = np.mean([iou(a, b) for a, b in pairs])
    return Grid(names, names, values)


def random_iou(sparsity: float) -> float:
    """The IoU two independent random masks of this sparsity have, in expectation: k / (2 - k), k the kept fraction."""
    kept = 1 - sparsity
    return kept / (2 - kept)


def attention_heads(model: str) -> int | None:
    """The number of attention heads of a base model (an embedded name or a local folder); None for a ResNet."""
    path = resolve_model(model)
    return None if is_resnet(path) else config_values(path, "num_attention_heads")[0]
