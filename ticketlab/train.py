"""The one training loop (Hugging Face accelerate): hooks for new behaviour, checkpoint and bit-exact resume.

fp32, or bf16 autocast with fp32 master weights (TrainConfig.precision); `accelerate launch` / torchrun run it
data-parallel unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import broadcast_object_list, gather_object, send_to_device
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Sampler
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from transformers import get_linear_schedule_with_warmup

from .atomic import atomic_path
from .config import TrainConfig
from .errors import TicketlabError
from .masks import mask_digest

Collate = Callable[[list[dict]], dict[str, torch.Tensor]]
Outputs = Callable[[Any, dict[str, torch.Tensor]], dict[str, torch.Tensor]]
T = TypeVar("T")
# Examples per evaluation batch at least: fewer forward calls (a small model's batches of 8 took longer to evaluate
# than to train on).
EVAL_BATCH = 64
FLOPS_ESTIMATE = "3 x forward_flops (backward: twice the forward) x steps; dense: pruned weights are multiplied too"
CHECKPOINT_KEYS = frozenset(
    {"step", "loss_sum", "time_s", "model", "optimizer", "scheduler", "rng", "cuda_rng", "hooks"}
)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Draws:
    """A training step's data randomness (MLM masks, augmented views): `generator` draws it for the step's whole
    batch, as one process does, and a process keeps the draws of its `share` of the batch, (start, stop, rows): rows
    [start, stop) of the batch's `rows` (None: all of them). So an example draws the same whatever the number of
    processes."""

    generator: torch.Generator
    share: tuple[int, int, int] | None = None

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


class TrainHook:
    """Extension points of the loop; override what you need."""

    def before_train(self, model: torch.nn.Module) -> None:
        """Training is about to start (or resume from a checkpoint)."""

    def after_backward(self, model: torch.nn.Module) -> None:
        """Gradients are ready, before clipping and the optimizer step."""

    def after_step(self, step: int, model: torch.nn.Module) -> None:
        """Optimizer step `step` (counted from 1) is done."""

    def should_stop(self) -> bool:
        """Asked after every step: True ends training there (e.g. the early-bird search has found its ticket)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the hook, so that a resumed run continues it exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` gave."""


class MaskEnforcer(TrainHook):
    """Keeps pruned weights exactly zero: masks gradients, and re-applies the mask after every optimizer step
    (AdamW's weight decay and momentum would otherwise regrow them)."""

    def __init__(self, weights: Sequence[torch.nn.Parameter], masks: Sequence[torch.Tensor]):
        pairs = [(w, m) for w, m in zip(weights, masks) if not bool(m.all())]  # a dense matrix needs no work
        self.weights = [w for w, _ in pairs]
        self.pruned = [~m.to(w.device) for w, m in pairs]

    @torch.no_grad()
    def after_backward(self, model: torch.nn.Module) -> None:
        for w, pruned in zip(self.weights, self.pruned):
            if w.grad is not None:
                w.grad.masked_fill_(pruned, 0.0)

    @torch.no_grad()
    def after_step(self, step: int, model: torch.nn.Module) -> None:
        for w, pruned in zip(self.weights, self.pruned):
            w.masked_fill_(pruned, 0.0)


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
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    for hook in hooks:
        hook.after_step(step, acc.unwrap_model(model))
    return loss.detach()


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
    processes can shift it. Launched on N processes, each trains on its share of every batch (`_batches`).
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
    probe_flops = forward_flops(acc.unwrap_model(prepared), probe, forward, Draws(seeded_generator(seed, "flops")))
    step, loss_sum, time_s = 0, torch.zeros((), device=acc.device), 0.0
    if checkpoint is not None and usable_checkpoint(checkpoint):
        step, loss_sum, time_s = _load_checkpoint(checkpoint, acc.unwrap_model(prepared), optimizer, scheduler, hooks)
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
                        _save_checkpoint(
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
) -> Iterator[tuple[dict[str, Any], tuple[int, int, int] | None]]:
    """The batches of `epoch` (EpochShuffle's order) from its batch number `skip` on, as this process trains on them,
    each with its share of the whole batch (see `Draws`; None: all of it). A process takes its slice of a whole batch;
    a short last batch is not split (the slices could leave a process no example): every process trains on all of
    it, so that step is the one a single process takes."""
    acc = accelerator()
    order = EpochShuffle(len(features), config.seed)
    order.set_epoch(epoch)
    indices = list(order)
    size = config.batch_size // acc.num_processes
    for first in range(skip * config.batch_size, len(indices), config.batch_size):
        batch = indices[first : first + config.batch_size]
        share = None
        if acc.num_processes > 1 and len(batch) == config.batch_size:
            share = (acc.process_index * size, (acc.process_index + 1) * size, len(batch))
            batch = batch[share[0] : share[1]]
        yield send_to_device(collate([features[i] for i in batch]), acc.device), share


def forward_flops(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    forward: Forward = call_model,
    draws: Draws | None = None,
) -> int:
    """The FLOPs of one pass of `batch` through `forward` (with `draws` as its data randomness) that
    torch.utils.flop_counter counts: matrix products, convolutions, attention; elementwise work is not counted.

    In eval mode, without gradients and with the global random state forked: no dropout draws a number and no
    BatchNorm statistics or MoCo queue move, so the run trains as it would without the count, and the count does not
    depend on where it resumed. The products' shapes, all that is counted, are those of training mode."""
    was_training = model.training
    model.eval()
    try:
        with (
            torch.random.fork_rng(devices=[]),
            torch.no_grad(),
            FlopCounterMode(display=False, custom_mapping={CPU_ATTENTION: _attention_flops}) as counter,
        ):
            forward(model, batch, draws)
    finally:
        model.train(was_training)
    return counter.get_total_flops()


# scaled_dot_product_attention's CPU kernel: torch's counter has no formula for it, so attention would count nothing
CPU_ATTENTION = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _attention_flops(query: torch.Size, key: torch.Size, value: torch.Size, *args, out_shape=None, **kwargs) -> int:
    """The attention scores' and the context's products, as torch counts them for the GPU kernels."""
    return sdpa_flop_count(query, key, value)


def _check_finite(losses: list[torch.Tensor], step: int, model: torch.nn.Module, description: str) -> None:
    """Raise, naming the step, if one of `losses` (those of the steps up to `step`) or a weight after `step` is nan
    or inf; `losses` is emptied. One device sync, so training checks only every `checkpoint_every` steps and at its
    end."""
    values = torch.stack(losses).cpu() if losses else torch.zeros(0)
    losses.clear()
    bad = (~values.isfinite()).nonzero().flatten()
    if len(bad):
        first = int(bad[0])
        at, what = step - len(values) + 1 + first, f"the training loss is {float(values[first])}"
    elif not torch.stack([p.isfinite().all() for p in model.parameters()]).all():
        at, what = step, "the weights turned nan or inf"
    else:
        return
    raise TicketlabError(f"{what} at step {at} of {description}; lower the learning rate (--lr)")


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


def _stopped(hooks: Sequence[TrainHook]) -> bool:
    return any(hook.should_stop() for hook in hooks)


def eval_batch_size(train_batch: int) -> int:
    """Evaluation's batch beside a training batch of `train_batch`: EVAL_BATCH, or twice it where that is more
    (evaluation keeps no gradients)."""
    return max(EVAL_BATCH, 2 * train_batch)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    features: list[dict],
    collate: Collate,
    batch_size: int,
    outputs: Outputs,
    forward: Forward = call_model,
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """Run `model` over `features` (each batch through `forward`, in `precision`) and keep
    `outputs(model_output, batch)` of every batch, rows in feature order.

    Text batches are formed by length for speed; rows of different lengths are zero-padded at the end of dim 1. A
    launch splits each batch between its processes: `batch_size` is rounded up to a multiple of their number.
    """
    acc = accelerator()
    order = sorted(range(len(features)), key=lambda i: len(features[i].get("input_ids", ())))
    size = -(-batch_size // acc.num_processes) * acc.num_processes
    loader = acc.prepare(DataLoader([features[i] for i in order], batch_size=size, collate_fn=collate))
    was_training = model.training
    model.eval()
    kept: dict[str, list[np.ndarray]] = {}
    for batch in loader:
        with autocast(precision):
            out = forward(model, batch, None)
        rows = {k: acc.pad_across_processes(v, dim=1) if v.ndim > 1 else v for k, v in outputs(out, batch).items()}
        for name, value in acc.gather_for_metrics(rows).items():
            kept.setdefault(name, []).append(
                value.float().cpu().numpy() if value.is_floating_point() else value.cpu().numpy()
            )
    model.train(was_training)
    unsort = np.argsort(order)
    return {name: _concatenate(parts)[unsort] for name, parts in kept.items()}


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    """Stack batches whose rows differ in length along dim 1, zero-padding the shorter ones."""
    if parts[0].ndim > 1:
        width = max(p.shape[1] for p in parts)
        parts = [np.pad(p, [(0, 0), (0, width - p.shape[1])] + [(0, 0)] * (p.ndim - 2)) for p in parts]
    return np.concatenate(parts)


def _save_checkpoint(
    path: Path,
    step: int,
    loss_sum: torch.Tensor,
    time_s: float,
    model,
    optimizer,
    scheduler,
    hooks: Sequence[TrainHook],
) -> None:
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


def _load_checkpoint(
    path: Path, model, optimizer, scheduler, hooks: Sequence[TrainHook]
) -> tuple[int, torch.Tensor, float]:
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
