"""Predictions: a model's outputs over a split, batch by batch, gathered from every process in feature order."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from .batches import Collate, Forward, Outputs, call_model
from .launch import accelerator, autocast

# Examples per evaluation batch at least: fewer forward calls (a small model's batches of 8 took longer to evaluate
# than to train on).
EVAL_BATCH = 64


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
