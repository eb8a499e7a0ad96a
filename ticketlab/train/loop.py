"""The one training loop (Hugging Face accelerate): hooks for new behaviour, checkpoint and bit-exact resume.

fp32, or bf16 autocast with fp32 master weights (TrainConfig.precision); `accelerate launch` / torchrun run it
data-parallel unchanged.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from accelerate.utils import send_to_device
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import get_linear_schedule_with_warmup

from ..config import TrainConfig
from ..errors import TicketlabError
from .batches import Collate, Draws, Forward, Share, call_model, epoch_batches, seeded_generator
from .checkpoint import load_checkpoint, save_checkpoint, usable_checkpoint
from .flops import FLOPS_ESTIMATE, forward_flops
from .hooks import TrainHook
from .launch import accelerator, autocast


@dataclass
class TrainResult:
    steps: int
    train_loss: float
    time_s: float  # training time over every attempt: a resumed run adds the time its checkpoint had counted
    examples: int  # training examples seen, over every process (an epoch shows each example once)
    forward_flops: int  # one forward pass of the probe batch, the global batch (see `forward_flops`), on one process
    train_flops: int  # the estimate of the training's FLOPs: FLOPS_ESTIMATE
    batch_size: int  # the global batch of a step
    processes: int  # the processes it was split among (torchrun, accelerate launch)

    def cost(self, eval_time_s: float) -> dict[str, Any]:
        """The cost ledger of a unit's record: what its training spent, and `eval_time_s` seconds of evaluation."""
        return {
            "steps": self.steps,
            "examples": self.examples,
            "processes": self.processes,
            "batch_per_process": self.batch_size // self.processes,
            "global_batch": self.batch_size,
            "train_time_s": self.time_s,
            "eval_time_s": eval_time_s,
            "forward_flops": self.forward_flops,
            "train_flops": self.train_flops,
            "flops": FLOPS_ESTIMATE,
        }


def total_steps(examples: int, config: TrainConfig) -> int:
    """Optimizer steps of one training run (on one process)."""
    return math.ceil(examples / config.batch_size) * config.epochs


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; biases and LayerNorm (every 1-D parameter) get no weight decay, as in Hugging Face's Trainer."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    # fused: one kernel for all parameters; on CPU several times faster than the default loop, which matters for
    # small models whose step is dominated by updating the embedding table
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)


def training_step(
    model,
    batch,
    optimizer,
    scheduler,
    hooks: Sequence[TrainHook],
    max_grad_norm: float,
    step: int,
    forward: Forward = call_model,
    draws: Draws | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Optimizer step number `step` (from 1), hooks included, the batch's data randomness from `draws`, the forward
    pass in `precision`; returns the (detached) loss."""
    acc = accelerator()
    with autocast(precision):
        loss = forward(model, batch, draws).loss
    acc.backward(loss)
    for hook in hooks:
        hook.after_backward(model)
    if max_grad_norm > 0:
        acc.clip_grad_norm_(model.parameters(), max_grad_norm)
    learning_rate = scheduler.get_last_lr()[0]  # this step's (the schedule moves on below)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    for hook in hooks:
        hook.after_step(step, acc.unwrap_model(model))
    loss = loss.detach()
    for hook in hooks:
        hook.log_step(step, loss, learning_rate)
    return loss


def train(
    model: torch.nn.Module,
    features: list[dict],
    collate: Collate,
    config: TrainConfig,
    *,
    hooks: Sequence[TrainHook] = (),
    checkpoint: Path | None = None,
    checkpoint_every: int = 100,
    description: str = "training",
    forward: Forward = call_model,
    seed: int | None = None,
) -> TrainResult:
    """Fine-tune `model` in place, each batch through `forward` (a task's may differ from the plain call).
    The data randomness of step k (MLM masks, augmented views) comes from a generator of the unit's `seed` (default:
    the config's) and k alone, drawn for the whole batch (see `Draws`), so neither resuming nor the number of
    processes can shift it. Launched on N processes, each trains on its share of every batch (`epoch_batches`).
    With `checkpoint`, saves there every `checkpoint_every` steps and resumes from it bit for bit when it holds a
    usable one (model, optimizer, schedule, random state, position, hooks, time). A hook may end training early
    (`should_stop`). A loss or weight that turns nan or inf raises a TicketlabError before any checkpoint or result
    holds it. The result's FLOPs are counted on a fixed probe batch, the first `batch_size` training features, so a
    resumed run counts what an uninterrupted one does."""
    started = time.perf_counter()
    if not features:
        raise TicketlabError("the training split is empty")
    acc = accelerator()
    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(features) / config.batch_size)
    total = steps_per_epoch * config.epochs  # the prepared scheduler steps once a step, whatever the processes
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total), total)
    prepared, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)

    seed = config.seed if seed is None else seed
    probe = send_to_device(collate(features[: config.batch_size]), acc.device)  # the first batch_size, as stored
    probe_draws = Draws(seeded_generator(config.seed, "flops"))  # the run's seed, not the unit's: one probe a run
    probe_flops = forward_flops(acc.unwrap_model(prepared), probe, forward, probe_draws)
    step, loss_sum, time_s = 0, torch.zeros((), device=acc.device), 0.0
    if checkpoint is not None and usable_checkpoint(checkpoint):
        step, loss_sum, time_s = load_checkpoint(checkpoint, acc.unwrap_model(prepared), optimizer, scheduler, hooks)
        loss_sum = loss_sum.to(acc.device)
    unchecked: list[torch.Tensor] = []  # the losses since the last check for nan and inf

    prepared.train()
    for hook in hooks:
        hook.before_train(acc.unwrap_model(prepared))
    with _progress(description, total, step) as advance:
        while step < total and not _stopped(hooks):
            epoch, offset = divmod(step, steps_per_epoch)
            for batch, share in _batches(features, collate, config, epoch, offset):
                step += 1
                draws = Draws(seeded_generator(seed, "data", step), share)
                loss = training_step(
                    prepared,
                    batch,
                    optimizer,
                    scheduler,
                    hooks,
                    config.max_grad_norm,
                    step,
                    forward,
                    draws,
                    config.precision,
                )
                loss_sum += loss
                unchecked.append(loss)
                if step % checkpoint_every == 0 and step < total:
                    _check_finite(unchecked, step, prepared, description)  # before a checkpoint can hold the weights
                    if checkpoint is not None:
                        elapsed = time_s + time.perf_counter() - started
                        save_checkpoint(
                            checkpoint, step, loss_sum, elapsed, acc.unwrap_model(prepared), optimizer, scheduler, hooks
                        )
                advance()
                if _stopped(hooks):
                    break
    _check_finite(unchecked, step, prepared, description)
    acc.free_memory()
    train_loss = float(acc.reduce(loss_sum, "mean")) / max(step, 1)
    epochs, steps_into_epoch = divmod(step, steps_per_epoch)
    examples = epochs * len(features) + min(steps_into_epoch * config.batch_size, len(features))
    return TrainResult(
        steps=step,
        train_loss=train_loss,
        time_s=time_s + time.perf_counter() - started,
        examples=examples,
        forward_flops=probe_flops,
        train_flops=3 * probe_flops * step,
        batch_size=config.batch_size,
        processes=acc.num_processes,
    )


def _batches(
    features: list[dict], collate: Collate, config: TrainConfig, epoch: int, skip: int
) -> Iterator[tuple[dict[str, Any], Share | None]]:
    """This process's batches of `epoch` from its batch number `skip` on (`epoch_batches`), collated on its device,
    each with its share of the whole batch."""
    acc = accelerator()
    shares = epoch_batches(
        len(features), config.batch_size, config.seed, epoch, skip, acc.process_index, acc.num_processes
    )
    for batch, share in shares:
        yield send_to_device(collate([features[i] for i in batch]), acc.device), share


def _check_finite(losses: list[torch.Tensor], step: int, model: torch.nn.Module, description: str) -> None:
    """Raise, naming the step, if one of `losses` (those of the steps up to `step`), a weight or a floating-point
    buffer (BatchNorm's running statistics, which a checkpoint keeps too) after `step` is nan or inf; `losses` is
    emptied. One device sync, so training checks only every `checkpoint_every` steps and at its end."""
    values = torch.stack(losses).cpu() if losses else torch.zeros(0)
    losses.clear()
    bad = (~values.isfinite()).nonzero().flatten()
    if len(bad):
        first = int(bad[0])
        at, what = step - len(values) + 1 + first, f"the training loss is {float(values[first])}"
    elif name := _first_nonfinite(model):
        at, what = step, f"the weights turned nan or inf ({name} first)"
    else:
        return
    raise TicketlabError(f"{what} at step {at} of {description}; lower the learning rate (--lr)")


def _first_nonfinite(model: torch.nn.Module) -> str | None:
    """The name of the first floating-point tensor of `model`'s state (weights and buffers) holding nan or inf."""
    state = [(name, t) for name, t in model.state_dict(keep_vars=True).items() if t.is_floating_point()]
    finite = torch.stack([t.detach().isfinite().all() for _, t in state]).cpu()
    return None if finite.all() else state[int((~finite).nonzero()[0])][0]


def _stopped(hooks: Sequence[TrainHook]) -> bool:
    return any(hook.should_stop() for hook in hooks)


@contextmanager
def _progress(description: str, total: int, done: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar on the main process only; yields the function that advances it."""
    if not accelerator().is_main_process:
        yield lambda: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task(description, total=total, completed=done)
        yield lambda: bar.advance(task)
