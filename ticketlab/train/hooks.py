"""The loop's extension points (TrainHook), and the hook that keeps pruned weights at zero."""

from __future__ import annotations

from typing import Any, Sequence

import torch


class TrainHook:
    """Extension points of the loop; override what you need."""

    def before_train(self, model: torch.nn.Module) -> None:
        """Training is about to start (or resume from a checkpoint)."""

    def after_backward(self, model: torch.nn.Module) -> None:
        """Gradients are ready, before clipping and the optimizer step."""

    def after_step(self, step: int, model: torch.nn.Module) -> None:
        """Optimizer step `step` (counted from 1) is done."""

    def log_step(self, step: int, loss: torch.Tensor, learning_rate: float) -> None:
        """After `after_step`: step `step`'s loss (this process's, detached and on its device: reading it waits for
        the device) and the learning rate the step was taken with."""

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
