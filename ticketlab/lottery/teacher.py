"""The teacher of a distilled run: its dense round 0. Its outputs on the training split do not change between rounds,
so they are computed once, in evaluation mode, and kept as a unit of the run (teacher/round_00/outputs.safetensors,
sealed like every unit; a damaged one is said in one line and computed again). Every distilled unit reads them and
pays nothing for its teacher. MLM draws new masks every step (ticketlab.distillation.ONLINE): there the dense model
runs beside each ticket instead, and each unit's ledger counts those forward passes.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from accelerate.utils import send_to_device
from safetensors.torch import load_file, save_file
from safetensors.torch import load_model as load_weights

from ..atomic import atomic_path
from ..distillation import KINDS, ONLINE, DistilledForward, attach_teacher, collate_with_teacher
from ..store.records import TeacherRecord
from ..train.batches import Collate, Draws, Forward, seeded_generator
from ..train.evaluate import eval_batch_size, predict
from ..train.flops import forward_flops
from ..train.launch import accelerator, on_main_process

if TYPE_CHECKING:
    from .context import RunContext

OUTPUTS = "outputs.safetensors"


@dataclass
class DistilledTraining:
    """What a distilled unit trains on: features carrying the teacher's outputs, their collate, the forward adding
    the distillation loss, and the FLOPs its teacher spends per training step (ONLINE kinds; else 0)."""

    features: list[dict]
    collate: Collate
    forward: Forward
    teacher_flops_per_step: int


def distilled_training(context: RunContext) -> DistilledTraining:
    """The training inputs of `context`'s distilled units (its run has `distill` settings)."""
    kind, settings = context.data.task.distillation, context.config.distill
    assert kind is not None and settings is not None  # resolve_config refuses a run that cannot distil
    features = context.data.features["train"]
    if kind in ONLINE:
        teacher = dense_model(context)
        forward = DistilledForward(context.data.task.forward, kind, settings, teacher)
        probe = context.data.train_collate(features[: context.config.train.batch_size])
        return DistilledTraining(features, context.data.train_collate, forward, _flops(context, teacher, probe))
    outputs = teacher_outputs(context)
    return DistilledTraining(
        attach_teacher(features, kind, outputs),
        collate_with_teacher(context.data.train_collate, kind),
        DistilledForward(context.data.task.forward, kind, settings),
        0,
    )


def dense_model(context: RunContext) -> torch.nn.Module:
    """A copy of the run's model holding its dense round 0's trained weights, in evaluation mode."""
    context.store.verified(0)
    model = copy.deepcopy(context.model)
    load_weights(model, str(context.store.weights_path(0)))
    return model.eval().requires_grad_(False)


def teacher_outputs(context: RunContext) -> dict[str, torch.Tensor]:
    """The dense round 0's outputs on every training feature (rows in feature order), from the run's teacher unit;
    computed and sealed first where it is missing or damaged."""
    teachers = context.store.teacher()
    if not on_main_process(lambda: teachers.intact(0)):
        _compute(context)
    return load_file(str(teachers.round_dir(0) / OUTPUTS))


def _compute(context: RunContext) -> None:
    """Run the dense model over the training split in evaluation mode and seal what it outputs, with its cost."""
    started = time.perf_counter()
    model, features = dense_model(context), context.data.features["train"]
    names = KINDS[context.data.task.distillation]
    batch = eval_batch_size(context.config.train.batch_size)
    kept = predict(
        model,
        features,
        context.data.train_collate,
        batch,
        lambda output, _: {name: output[name].float() for name in names},
        context.data.task.forward,
        context.config.train.precision,
    )
    flops = _flops(context, model, context.data.train_collate(features[:batch])) * math.ceil(len(features) / batch)
    outputs = {name: torch.from_numpy(kept[name]).contiguous() for name in names}
    cost = {"examples": len(features), "eval_time_s": time.perf_counter() - started, "teacher_flops": flops}
    record = TeacherRecord(kind=context.data.task.distillation, cost=cost)

    def keep(folder) -> None:
        with atomic_path(folder / OUTPUTS) as tmp:
            save_file(outputs, str(tmp))

    context.store.teacher().unit(0).seal(record, keep)


def _flops(context: RunContext, teacher: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """The FLOPs of the teacher's forward pass of a training `batch` (with the draws the ledger's probe takes)."""
    draws = Draws(seeded_generator(context.config.train.seed, "flops"))
    return forward_flops(teacher, send_to_device(batch, accelerator().device), context.data.task.forward, draws)
