"""Pruning granularity: which weights a mask keeps or prunes together, written "weight", "block:RxC" or "N:M".

A weight tensor is seen as a matrix (shape[0], -1): a row per output, a column per input (a convolution's input
channels times its kernel, flattened). "weight": every weight alone; "block:RxC": blocks of R rows x C columns kept or
pruned whole, ranked by their L1 norm; "N:M": every group of M consecutive weights of a row keeps at most N.
These are pure functions of tensors; ticketlab.pruning.magnitude ranks what they make.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..errors import TicketlabError
from ..masks import Mask


@dataclass(frozen=True)
class Weight:
    """Every weight ranked alone (the default)."""

    def __str__(self) -> str:
        return "weight"


@dataclass(frozen=True)
class Blocks:
    """Blocks of `rows` x `columns` weights, kept or pruned whole."""

    rows: int
    columns: int

    def __str__(self) -> str:
        return f"block:{self.rows}x{self.columns}"


@dataclass(frozen=True)
class NOfM:
    """At most `n` kept weights in every group of `m` consecutive weights of a row."""

    n: int
    m: int

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"

    @property
    def least_sparsity(self) -> float:
        """The sparsity the constraint alone makes: 1 - n/m."""
        return 1.0 - self.n / self.m


Granularity = Weight | Blocks | NOfM
WEIGHT = Weight()
_BLOCKS = re.compile(r"block:([1-9][0-9]*)x([1-9][0-9]*)")
_N_OF_M = re.compile(r"([1-9][0-9]*):([1-9][0-9]*)")
_TOLERANCE = 1e-9  # a level such as 1 - 2/3, written with 12 digits, still reaches the N:M constraint


def parse_granularity(text: str) -> Granularity:
    """The granularity `text` names; a one-line error for anything else."""
    if text == str(WEIGHT):
        return WEIGHT
    if blocks := _BLOCKS.fullmatch(text):
        return Blocks(int(blocks[1]), int(blocks[2]))
    if (n_of_m := _N_OF_M.fullmatch(text)) and int(n_of_m[1]) < int(n_of_m[2]):
        return NOfM(int(n_of_m[1]), int(n_of_m[2]))
    raise TicketlabError(
        f"unknown granularity {text!r}; known: weight, block:RxC (R, C >= 1, e.g. block:4x4), N:M (N < M, e.g. 2:4)"
    )


def check_fits(weights: Mapping[str, torch.Tensor], granularity: Granularity) -> None:
    """A one-line error naming the first matrix whose (shape[0], -1) view does not divide into the granularity's
    blocks or groups."""
    rows, columns = _divisors(granularity)
    for name, weight in weights.items():
        height, width = _matrix_shape(weight)
        if height % rows or width % columns:
            unit = f"{rows}x{columns} blocks" if isinstance(granularity, Blocks) else f"groups of {columns} weights"
            raise TicketlabError(
                f"granularity {granularity}: {name} ({height}x{width} as a matrix, shape "
                f"{'x'.join(map(str, weight.shape))}) does not divide into {unit}"
            )


def check_levels(granularity: Granularity, levels: Sequence[float]) -> None:
    """A one-line error naming the first sparsity above 0 that is below the one an N:M granularity makes by itself
    (1 - N/M)."""
    if not isinstance(granularity, NOfM):
        return
    least = granularity.least_sparsity
    below = next((level for level in levels if 0 < level < least - _TOLERANCE), None)
    if below is not None:
        raise TicketlabError(
            f"granularity {granularity} prunes at least {least:g} of the weights: sparsity {below:g} is below that "
            f"(a schedule that starts there: --schedule geometric --rate {least:g})"
        )


def block_scores(
    weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], blocks: Blocks
) -> tuple[dict[str, torch.Tensor], Mask]:
    """Per matrix, a (rows / R) x (columns / C) grid of its blocks: their L1 norms (fp32), and which are kept (a
    block with any weight pruned counts as pruned, so a mask made from them is nested in `mask`)."""
    check_fits(weights, blocks)
    scores = {name: _blocks(w.detach().to("cpu", torch.float32).abs(), blocks).sum(-1) for name, w in weights.items()}
    kept = {name: _blocks(mask[name].to("cpu"), blocks).all(-1) for name in weights}
    return scores, kept


def expand_blocks(kept: torch.Tensor, blocks: Blocks, shape: torch.Size) -> torch.Tensor:
    """The weight mask of `shape` that keeps exactly the weights of the kept blocks (`kept`: as `block_scores`)."""
    return kept.repeat_interleave(blocks.rows, 0).repeat_interleave(blocks.columns, 1).reshape(shape)


def cap_groups(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], n_of_m: NOfM) -> Mask:
    """`mask` with at most N kept weights in every group of M: the N largest |w| (fp32) of the group's kept ones;
    ties are broken by position, the earlier weight pruned first, as in magnitude pruning."""
    check_fits(weights, n_of_m)
    capped: Mask = {}
    for name, weight in weights.items():
        scores = _groups(weight.detach().to("cpu", torch.float32).abs(), n_of_m.m)
        kept = _groups(mask[name].to("cpu"), n_of_m.m)
        scores[~kept] = -1.0  # below every |w|: pruned weights are the first of their group to go
        lowest = torch.argsort(scores, dim=-1, stable=True)[..., : n_of_m.m - n_of_m.n]
        capped[name] = kept.scatter(-1, lowest, False).reshape(mask[name].shape)
    return capped


def _divisors(granularity: Granularity) -> tuple[int, int]:
    """The rows and the columns of a matrix must divide by these."""
    if isinstance(granularity, Blocks):
        return granularity.rows, granularity.columns
    if isinstance(granularity, NOfM):
        return 1, granularity.m
    return 1, 1


def _matrix_shape(weight: torch.Tensor) -> tuple[int, int]:
    """(shape[0], the rest flattened): the matrix a weight tensor is seen as."""
    return weight.shape[0], weight[0].numel()


def _blocks(tensor: torch.Tensor, blocks: Blocks) -> torch.Tensor:
    """A (rows / R, columns / C, R * C) view of the tensor's matrix: one line per block."""
    height, width = _matrix_shape(tensor)
    grid = tensor.reshape(height // blocks.rows, blocks.rows, width // blocks.columns, blocks.columns)
    return grid.transpose(1, 2).reshape(height // blocks.rows, width // blocks.columns, -1)


def _groups(tensor: torch.Tensor, m: int) -> torch.Tensor:
    """A (rows, columns / m, m) view of the tensor's matrix: one line per group of m consecutive weights of a row."""
    height, width = _matrix_shape(tensor)
    return tensor.reshape(height, width // m, m)
