"""EarlyBERT's search, as a hook of the one training loop: a learnable slimming coefficient on every attention head
and FFN neuron (applied by forward hooks that scale heads' outputs and neurons' activations), their L1 penalty, and
the early-bird test on the tickets they draw as training goes."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from ..errors import TicketlabError
from ..pruning.settle import Draw, SettleTest
from ..train.hooks import TrainHook
from .draw import Shapes, Structure, draw_structure
from .layers import check_keys, layer_modules, layer_shapes

ATTRIBUTE = "ticketlab_slimming"  # the coefficients' submodule while the search runs


class ScaleHooks:
    """The forward pre-hooks `scale_structures` registered; `remove()` (or leaving a `with` block) takes them off."""

    def __init__(self, handles: list[torch.utils.hooks.RemovableHandle]):
        self.handles = handles

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self) -> ScaleHooks:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def scale_structures(model: nn.Module, scales: Mapping[str, torch.Tensor]) -> ScaleHooks:
    """Multiply each head's output and each FFN neuron's activation by its entry in `scales` (keyed like a
    structure, float, any subset of its keys) on every forward pass, until the returned hooks are removed.

    Scales may be trainable parameters: gradients flow into them. Each is cast to the activations' dtype, so this
    works under autocast and on half-precision models. With a structure as 0/1 scales, this is the masked model.
    """
    layers = layer_modules(model)
    check_keys(model, scales, layer_shapes(model), "scales", complete=False)
    handles = []
    for name, scale in scales.items():
        if not scale.is_floating_point():
            raise TicketlabError(
                f"scales {name} is {scale.dtype}; scales are float tensors (a structure is scales.float())"
            )
        kind, index = name.split(".")
        layer = layers[int(index)]
        if kind == "heads":
            handles.append(layer.attention_output.register_forward_pre_hook(_scale_heads_hook(scale, layer.head_size)))
        else:
            handles.append(layer.ffn_out.register_forward_pre_hook(_scale_neurons_hook(scale)))
    return ScaleHooks(handles)


def _scale_heads_hook(scale: torch.Tensor, head_size: int):
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        per_head = x.unflatten(-1, (scale.numel(), head_size)) * scale.to(x.device, x.dtype).unsqueeze(-1)
        return (per_head.flatten(-2), *args[1:])

    return hook


def _scale_neurons_hook(scale: torch.Tensor):
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        return (x * scale.to(x.device, x.dtype), *args[1:])

    return hook


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

    def __init__(
        self,
        coefficients: SlimmingCoefficients,
        heads: float,
        ffn: float,
        l1: float,
        draw_every: int,
        early_bird: SettleTest,
    ):
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
        return {
            "draws": [asdict(d) for d in self.draws],
            "ticket": self.ticket,
            "found": self.found,
            "early_bird": self.early_bird.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.draws = [Draw(**d) for d in state["draws"]]
        self.ticket, self.found = state["ticket"], state["found"]
        self.early_bird.load_state_dict(state["early_bird"])
