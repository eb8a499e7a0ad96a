"""Which kind of matrix a prunable weight is, by its name relative to the backbone: a BERT-family encoder's
``encoder.layer.3.attention.self.query.weight`` (also ``key``, ``value``), ``...attention.output.dense.weight``,
``...intermediate.dense.weight``, ``...output.dense.weight`` and ``pooler.dense.weight``; a ResNet's
``layer2.0.conv1.weight`` (block 0 of stage 2; also ``conv2``, ``conv3``) and ``layer2.0.downsample.0.weight``."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Mapping

import torch

MATRIX_TYPES = ("query", "key", "value", "attention output", "FFN in", "FFN out", "pooler")
ATTENTION = MATRIX_TYPES[:4]
CONV_TYPES = ("conv1", "conv2", "conv3", "downsample")
OTHER = "other"  # a matrix outside these layouts (an EarlyBERT structure's heads and neurons)

_MODULES = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
_TYPE_OF = dict(zip(_MODULES, MATRIX_TYPES))
_IN_LAYER = re.compile(rf"(?:^|\.)layer\.(\d+)\.({'|'.join(map(re.escape, _MODULES))})\.weight$")
_POOLER = re.compile(r"(?:^|\.)pooler\.dense\.weight$")
_IN_BLOCK = re.compile(r"(?:^|\.)layer(\d+)\.(\d+)\.(conv[123]|downsample)(?:\.0)?\.weight$")


def matrix_of(name: str) -> tuple[int | str | None, str] | None:
    """(layer, matrix type) of a prunable weight, layer None for the pooler; for a ResNet (block "stage.block", conv);
    None for a name outside these layouts."""
    if match := _IN_LAYER.search(name):
        return int(match[1]), _TYPE_OF[match[2]]
    if match := _IN_BLOCK.search(name):
        return f"{match[1]}.{match[2]}", match[3]
    if _POOLER.search(name):
        return None, "pooler"
    return None


def type_counts(mask: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, int, int]]:
    """(matrices, kept weights, weights) per matrix type, in the order of MATRIX_TYPES, CONV_TYPES, then OTHER."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for name, m in mask.items():
        where = matrix_of(name)
        kind = OTHER if where is None else where[1]
        counts[kind][0] += 1
        counts[kind][1] += int(m.count_nonzero())
        counts[kind][2] += m.numel()
    return {kind: tuple(counts[kind]) for kind in (*MATRIX_TYPES, *CONV_TYPES, OTHER) if kind in counts}
