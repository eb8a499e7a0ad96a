"""EarlyBERT's search, as a hook of the one training loop: a learnable slimming coefficient on every attention head
and FFN neuron, their L1 penalty, and the early-bird test on the tickets they draw as training goes."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Iterator

import torch
from torch import nn

from .errors import TicketlabError
from .models.compact import layer_shapes, scale_structures
from .pruning.structured import Draw, EarlyBird, Shapes, Structure, draw_structure
from .train import TrainHook

ATTRIBUTE = "ticketlab_slimming"  # the coefficients' submodule while the search runs


class SlimmingCoefficients(nn.Module):
    """One learnable scale per attention head and per FFN neuron of every layer, initialised at 1."""

    def __init__(self, shapes: Shapes):
        super().__init__()
        self.heads = nn.ParameterList(nn.Parameter(torch.ones(heads)) for heads, _ in shapes)
        self.ffn = nn.ParameterList(nn.Parameter(torch.ones(neurons)) for _, neurons in shapes)

    def scales(self) -> dict[str, nn.Parameter]:
        """The coefficients keyed like a structure ("heads.{i}", "ffn.{i}")."""
        return {
            **{f"heads.{i}": p for i, p in enumerate(self.heads)},
            **{f"ffn.{i}": p for i, p in enumerate(self.ffn)},
        }


@contextmanager
def slimming(model: nn.Module) -> Iterator[SlimmingCoefficients]:
    """Scale every head's output and every FFN neuron's activation of `model` by a coefficient. The coefficients
    are a submodule of the model while the context lasts, so the loop's optimizer and checkpoints include them."""
    if hasattr(model, ATTRIBUTE):
        raise TicketlabError("the model carries slimming coefficients already")
    parameter = next(model.parameters())
    coefficients = SlimmingCoefficients(layer_shapes(model)).to(parameter.device)
    model.add_module(ATTRIBUTE, coefficients)
    hooks = scale_structures(model, coefficients.scales())
    try:
        yield coefficients
    finally:
        hooks.remove()
        delattr(model, ATTRIBUTE)


class EarlyBirdSearch(TrainHook):
    """Adds the L1 penalty's gradient to the coefficients, draws a ticket from them every `draw_every` steps, and
    stops training once the early-bird test finds the draws stable."""

    def __init__(self, coefficients: SlimmingCoefficients, heads: float, ffn: float, l1: float, draw_every: int, early_bird: EarlyBird):
        self.coefficients, self.heads, self.ffn, self.l1 = coefficients, heads, ffn, l1
        self.draw_every, self.early_bird = draw_every, early_bird
        self.draws: list[Draw] = []
        self.ticket: Structure | None = None
        self.found = False

    @torch.no_grad()
    def after_backward(self, model: nn.Module) -> None:
        """The subgradient of l1 * sum |c|: only the coefficients' gradients change, and no other loss term."""
        for coefficient in self.coefficients.parameters():
            penalty = self.l1 * torch.sign(coefficient)
            if coefficient.grad is None:
                coefficient.grad = penalty
            else:
                coefficient.grad.add_(penalty)

    def after_step(self, step: int, model: nn.Module) -> None:
        if step % self.draw_every == 0:
            self.draw(step)

    def draw(self, step: int) -> None:
        """Draw the ticket the coefficients give now and put it to the early-bird test."""
        scores = {name: c.detach().cpu() for name, c in self.coefficients.scales().items()}
        self.ticket = draw_structure(scores, self.heads, self.ffn)
        draw = self.early_bird.observe(step, self.ticket)
        self.draws.append(draw)
        self.found = self.early_bird.is_found(draw)

    def should_stop(self) -> bool:
        return self.found

    def state_dict(self) -> dict[str, Any]:
        return {"draws": [asdict(d) for d in self.draws], "ticket": self.ticket, "found": self.found, "early_bird": self.early_bird.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.draws = [Draw(**d) for d in state["draws"]]
        self.ticket, self.found = state["ticket"], state["found"]
        self.early_bird.load_state_dict(state["early_bird"])
