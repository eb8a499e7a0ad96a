"""Knowledge distillation of a ticket from its run's dense model: the loss on each kind of task output, the batches
that carry the teacher's outputs, and the forward that adds the loss.

A task names its kind (`Task.distillation`): "logits" (classification: KL over the classes), "score" (a
regression: MSE), "spans" (extractive QA: KL over the positions, for the start and for the end) or
"masked-tokens" (MLM: KL over the vocabulary at the masked positions). The teacher's outputs of every kind but
"masked-tokens" are fixed, so a run computes them once (ticketlab.lottery.teacher); MLM draws new masks every step,
and its teacher runs beside the student on the same masked batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .config import DistillConfig
from .train.batches import Collate, Draws, Forward

TEACHER = "teacher"  # the batch key (and feature key) of the teacher's outputs
KINDS: dict[str, tuple[str, ...]] = {  # kind -> the model outputs it distills
    "logits": ("logits",),
    "score": ("logits",),
    "spans": ("start_logits", "end_logits"),
    "masked-tokens": ("logits",),
}
ONLINE = frozenset({"masked-tokens"})  # inputs drawn afresh every step: no stored teacher outputs can serve
PADDING_LOGIT = -1e4  # positions outside a text: no probability for the student nor for the teacher


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher / T) ‖ softmax(student / T)) over the last dimension, averaged over the rows (Hinton
    et al. 2015: T² keeps the gradients' scale as T changes)."""
    rows = student.reshape(-1, student.shape[-1]).float() / temperature
    targets = teacher.reshape(-1, teacher.shape[-1]).float() / temperature
    kl = F.kl_div(F.log_softmax(rows, -1), F.log_softmax(targets, -1), log_target=True, reduction="batchmean")
    return kl * temperature**2


def distillation_loss(
    kind: str, output: Any, teacher: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], temperature: float
) -> torch.Tensor:
    """The distillation term of a `kind` task's loss: the student's `output` against the `teacher`'s outputs."""
    if kind == "score":
        return F.mse_loss(output.logits.float().reshape(-1), teacher["logits"].float().reshape(-1))
    if kind == "spans":
        outside = ~batch["attention_mask"].bool()
        terms = [
            soft_kl(
                output[name].masked_fill(outside, PADDING_LOGIT),
                teacher[name].masked_fill(outside, PADDING_LOGIT),
                temperature,
            )
            for name in KINDS[kind]
        ]
        return sum(terms) / len(terms)
    return soft_kl(output.logits, teacher["logits"], temperature)


def attach_teacher(features: list[dict], kind: str, outputs: dict[str, torch.Tensor]) -> list[dict]:
    """Copies of `features` each carrying its row of the teacher's `outputs` (rows in feature order; "spans": cut to
    the feature's tokens)."""

    def row(name: str, i: int, feature: dict) -> torch.Tensor:
        value = outputs[name][i]
        return value[: len(feature["input_ids"])] if kind == "spans" else value

    return [
        {**feature, TEACHER: {name: row(name, i, feature) for name in KINDS[kind]}}
        for i, feature in enumerate(features)
    ]


def collate_with_teacher(collate: Collate, kind: str) -> Collate:
    """`collate` for features that carry their teacher's outputs of a `kind` task: the batch gets them under TEACHER,
    each output's rows stacked ("spans": zero-padded to the batch's tokens, as the batch pads its texts)."""

    def batch_of(features: list[dict]) -> dict[str, Any]:
        batch = collate([{k: v for k, v in feature.items() if k != TEACHER} for feature in features])
        rows = {name: [feature[TEACHER][name] for feature in features] for name in KINDS[kind]}
        if kind == "spans":
            width = batch["input_ids"].shape[1]
            rows = {name: [F.pad(row, (0, width - len(row))) for row in values] for name, values in rows.items()}
        batch[TEACHER] = {name: torch.stack(values) for name, values in rows.items()}
        return batch

    return batch_of


@dataclass
class DistilledForward:
    """A task's forward in training with the distillation term added: (1 - α) · task loss + α · distillation loss.
    The teacher's outputs come with the batch (TEACHER), or, for an ONLINE kind, from `teacher` run on the same
    batch with the same draws. In evaluation (and the FLOP probe) it is the task's forward alone."""

    forward: Forward
    kind: str
    settings: DistillConfig
    teacher: torch.nn.Module | None = None  # ONLINE kinds: the dense model, in evaluation mode

    def __call__(self, model: torch.nn.Module, batch: dict[str, Any], draws: Draws | None = None) -> Any:
        batch = dict(batch)
        stored = batch.pop(TEACHER, None)
        if not model.training:
            return self.forward(model, batch, draws)
        teacher_draws = None if draws is None else Draws(_copy(draws.generator), draws.share)
        output = self.forward(model, batch, draws)
        if self.teacher is not None:
            with torch.no_grad():
                taught = self.forward(self.teacher, batch, teacher_draws)
            stored = {name: taught[name] for name in KINDS[self.kind]}
        if stored is None:
            raise ValueError("a distilled batch carries no teacher outputs and the forward has no teacher")
        alpha = self.settings.alpha
        distilled = distillation_loss(self.kind, output, stored, batch, self.settings.temperature)
        output["loss"] = (1 - alpha) * output.loss + alpha * distilled
        return output


def _copy(generator: torch.Generator) -> torch.Generator:
    """A generator that draws what `generator` will draw next (the teacher's masks are the student's)."""
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy
