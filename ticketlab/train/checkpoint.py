"""A training's checkpoint: model, optimizer, schedule, every process's random state, position, hooks and time, so
that a resumed run continues bit for bit. A checkpoint is only a cache of progress: a damaged one is discarded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from accelerate.utils import gather_object

from ..atomic import atomic_path
from .hooks import TrainHook
from .launch import accelerator, on_main_process

CHECKPOINT_KEYS = frozenset(
    {"step", "loss_sum", "time_s", "model", "optimizer", "scheduler", "rng", "cuda_rng", "hooks"}
)
log = logging.getLogger(__name__)


def usable_checkpoint(path: Path) -> bool:
    """Whether `path` holds a checkpoint to resume from, as the main process finds it. A damaged one is only a cache
    of progress: it is reported in one line and removed, so that the unit starts afresh from its start weights."""
    return on_main_process(lambda: _usable(path))


def _usable(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing = CHECKPOINT_KEYS - state.keys()
        if missing:
            raise KeyError(sorted(missing)[0])
    except Exception as error:  # whatever keeps a cache from loading (truncated, garbage, empty, old), it goes
        return _discard(path, f"is damaged ({type(error).__name__})")
    processes = accelerator().num_processes
    written = [len(state[key]) if isinstance(state[key], list) else 1 for key in ("rng", "loss_sum")]
    if written != [processes, processes]:  # a launch of another size (or a checkpoint from before launches)
        return _discard(path, f"was written by {written[0]} processes, and this launch has {processes}")
    return True


def _discard(path: Path, why: str) -> bool:
    log.warning("%s %s; discarding it: that training starts afresh", path, why)
    path.unlink(missing_ok=True)
    return False


def save_checkpoint(
    path: Path,
    step: int,
    loss_sum: torch.Tensor,
    time_s: float,
    model,
    optimizer,
    scheduler,
    hooks: Sequence[TrainHook],
) -> None:
    """Write the state after optimizer step `step` to `path` (atomically, by the main process), with every process's
    loss sum and random state; every process waits for it."""
    acc = accelerator()
    # every process's own: each sums the losses of its share of the batches and draws its own dropout
    losses = gather_object([loss_sum.cpu()])
    rng = gather_object([torch.get_rng_state()])
    cuda_rng = gather_object([torch.cuda.get_rng_state() if torch.cuda.is_available() else torch.empty(0)])
    if acc.is_main_process:
        state = {
            "step": step,
            "loss_sum": losses,
            "time_s": time_s,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "cuda_rng": cuda_rng,
            "hooks": [hook.state_dict() for hook in hooks],
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    acc.wait_for_everyone()


def load_checkpoint(
    path: Path, model, optimizer, scheduler, hooks: Sequence[TrainHook]
) -> tuple[int, torch.Tensor, float]:
    """Restore what `save_checkpoint` wrote (this process's random state and loss sum); returns (step, loss sum,
    training time so far)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    process = accelerator().process_index
    torch.set_rng_state(state["rng"][process])
    if state["cuda_rng"][process].numel():
        torch.cuda.set_rng_state(state["cuda_rng"][process])
    for hook, hook_state in zip(hooks, state["hooks"]):
        hook.load_state_dict(hook_state)
    return state["step"], state["loss_sum"][process], state["time_s"]
