"""The process's accelerator and precision, and what the processes of a launch (torchrun, accelerate launch) agree
on: the main process's decisions, the batch split, the masks drawn."""

from __future__ import annotations

import functools
from typing import Callable, Mapping, TypeVar

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import broadcast_object_list, gather_object

from ..config import TrainConfig
from ..errors import TicketlabError
from ..masks import mask_digest

T = TypeVar("T")


@functools.cache
def accelerator() -> Accelerator:
    """The process's accelerator (its precision is each run's: `autocast`). Launched on N processes (torchrun,
    accelerate launch), a batch of `batch_size` is split among them: the recipe's batch is the global one, and the
    steps, the schedule and the examples seen do not depend on N."""
    gpu = torch.cuda.is_available()
    return Accelerator(
        cpu=not gpu,  # without a GPU, accelerate sees a torchrun launch (gloo) only when told the run is on the CPU
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )


def autocast(precision: str) -> torch.autocast:
    """Forward passes in `precision`: bf16 autocast (matrix products in bf16, weights and optimizer state stay fp32,
    so masks are always ranked from fp32 weights), or plain fp32. Per run, not per process, so it is not accelerate's
    process-wide mixed precision."""
    return torch.autocast(accelerator().device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def end_launch() -> None:
    """Tear down a launch's process group before the interpreter exits, as torch asks: a gloo group left to the exit
    can abort it ("terminate called without an active exception", SIGABRT) after the work is done."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def on_main_process(action: Callable[[], T]) -> T:
    """`action` (a change to the store, or a decision that makes one) done by the main process alone; every process
    gets its result once it is done, so that all of them follow the same plan."""
    acc = accelerator()
    if acc.num_processes == 1:
        return action()
    result = [action() if acc.is_main_process else None]
    broadcast_object_list(result)
    return result[0]


def check_processes(config: TrainConfig) -> None:
    """A one-line error where the launch's processes cannot split the recipe's batch evenly."""
    processes = accelerator().num_processes
    if config.batch_size % processes:
        raise TicketlabError(
            f"batch_size {config.batch_size} is the batch of all {processes} processes together: it must be a "
            "multiple of their number"
        )


def check_same_mask(mask: Mapping[str, torch.Tensor], unit: str) -> None:
    """On every process of a launch: raise, in one line, unless every process drew `mask` (their digests compared)."""
    digests = gather_object([mask_digest(mask)])
    if len(set(digests)) > 1:
        differing = [i for i, digest in enumerate(digests) if digest != digests[0]]
        raise TicketlabError(f"{unit}: process {differing[0]} drew another mask than process 0")
