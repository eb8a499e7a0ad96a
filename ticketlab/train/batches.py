"""What a batch is and the data randomness of a step: the contract that the loop, the tasks, distillation and
pruning share. A leaf: it imports torch and the standard library only."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import torch
from torch.utils.data import Sampler

Collate = Callable[[list[dict]], dict[str, torch.Tensor]]
Outputs = Callable[[Any, dict[str, torch.Tensor]], dict[str, torch.Tensor]]
Share = tuple[int, int, int]  # (start, stop, rows): rows [start, stop) of a batch of `rows`
T = TypeVar("T")


@dataclass(frozen=True)
class Draws:
    """A training step's data randomness (MLM masks, augmented views): `generator` draws it for the step's whole
    batch, as one process does, and a process keeps the draws of its `share` of the batch, (start, stop, rows): rows
    [start, stop) of the batch's `rows` (None: all of them). So an example draws the same whatever the number of
    processes."""

    generator: torch.Generator
    share: Share | None = None

    def apply(self, draw: Callable[..., T], *tensors: torch.Tensor) -> T:
        """`draw(*tensors, generator)` for this process's rows of `tensors`: with a share, they are zero-padded to the
        whole batch, drawn for, and each tensor `draw` returns (one, or a tuple) is cut back to the share. `draw` must
        treat every row on its own, as the masking and the augmentations do."""
        if self.share is None:
            return draw(*tensors, self.generator)
        start, stop, rows = self.share
        padded = [tensor.new_zeros((rows, *tensor.shape[1:])) for tensor in tensors]
        for whole, part in zip(padded, tensors):
            whole[start:stop] = part
        drawn = draw(*padded, self.generator)
        return tuple(d[start:stop] for d in drawn) if isinstance(drawn, tuple) else drawn[start:stop]


# (model, batch, the batch's data randomness: None in evaluation) -> output with `.loss`
Forward = Callable[[torch.nn.Module, dict[str, torch.Tensor], Draws | None], Any]


def call_model(model: torch.nn.Module, batch: dict[str, torch.Tensor], draws: Draws | None = None) -> Any:
    """The plain way a batch goes through a model (no data randomness)."""
    return model(**batch)


def seeded_generator(*key: object) -> torch.Generator:
    """A CPU generator seeded by a stable hash of `key` (e.g. the run's seed, a control, a round)."""
    digest = hashlib.sha256("/".join(map(str, key)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


class EpochShuffle(Sampler[int]):
    """A fixed random order per (seed, epoch), independent of any other random state, so resuming is exact."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def epoch_batches(
    size: int, batch_size: int, seed: int, epoch: int, skip: int, process: int, processes: int
) -> Iterator[tuple[list[int], Share | None]]:
    """The examples (indices into `size`) of the batches of `epoch` (EpochShuffle's order) from its batch number
    `skip` on, as process `process` of `processes` trains on them, each with its share of the whole batch (see
    `Draws`; None: all of it). A process takes its slice of a whole batch; a short last batch is not split (the
    slices could leave a process no example): every process trains on all of it, so that step is the one a single
    process takes."""
    order = EpochShuffle(size, seed)
    order.set_epoch(epoch)
    indices = list(order)
    part = batch_size // processes
    for first in range(skip * batch_size, len(indices), batch_size):
        batch = indices[first : first + batch_size]
        share = None
        if processes > 1 and len(batch) == batch_size:
            share = (process * part, (process + 1) * part, len(batch))
            batch = batch[share[0] : share[1]]
        yield batch, share
