"""Early-bird IMP: while a round trains, the mask the next pruning would draw is drawn again every few steps; once the
newest draw lies within a normalized Hamming distance of each of the previous few (the test EarlyBERT's search uses,
ticketlab.pruning.settle.SettleTest), it is the next round's mask, the task head of that step is the next round's
starting head, and a round that only searches stops there. Training up to that step is the same whether the round stops
there or trains on, so both draw the same masks and start the next round alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..config import PruneConfig
from ..masks import Mask
from ..pruning.settle import SettleTest
from ..store import RunStore
from ..train.hooks import TrainHook

Head = dict[str, torch.Tensor]  # a task head's values by parameter name


def draw_path(store: RunStore, round: int) -> Path:
    """The mask round `round` drew for the next round (where its draw settled, or from its final weights)."""
    return store.round_dir(round) / "draw.safetensors"


def draw_head_path(store: RunStore, round: int) -> Path:
    """The task head of the step round `round` drew the next round's mask at: the next round starts from it."""
    return store.round_dir(round) / "draw_head.safetensors"


class SettleWatch(TrainHook):
    """Draws the next mask (`draw`, from the weights as they train) every `draw_every` steps and applies the
    early-bird test to the draws, keeping the task head (`head`: its values now) of the draw that passes it; with
    `stop`, training ends once it is passed."""

    def __init__(self, draw: Callable[[], Mask], head: Callable[[], Head], settings: PruneConfig, stop: bool):
        self.draw, self.head, self.every, self.stop = draw, head, settings.draw_every, stop
        self.test = SettleTest(settings.settle_window, settings.settle_threshold)
        self.found: Mask | None = None
        self.found_head: Head | None = None
        self.step: int | None = None  # the step whose draw passed the test
        self.distances: list[float | None] = []  # each draw's largest distance to the previous window

    def after_step(self, step: int, model: torch.nn.Module) -> None:
        if self.found is None and step % self.every == 0:
            mask = self.draw()
            observed = self.test.observe(step, mask)
            self.distances.append(observed.window)
            if self.test.is_found(observed):
                self.found, self.found_head, self.step = mask, self.head(), step

    def should_stop(self) -> bool:
        return self.stop and self.found is not None

    def result(self, steps: int) -> tuple[Mask, Head, dict[str, Any]]:
        """The next round's mask and starting head, and what the round records of its draw (`steps`: the steps it
        trained): where the draw settled, or, where it never did, the draw and head of the final weights, as IMP's. A
        round the watch stopped (`should_stop`) only drew the next mask; one whose draw never settled trained in full
        and is a ticket like any."""
        settled = self.found is not None
        mask, head = (self.found, self.found_head) if settled else (self.draw(), self.head())
        return mask, head, {"step": self.step if settled else steps, "settled": settled, "distances": self.distances}

    def state_dict(self) -> dict[str, Any]:
        return {
            "test": self.test.state_dict(),
            "found": self.found,
            "found_head": self.found_head,
            "step": self.step,
            "distances": self.distances,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.test.load_state_dict(state["test"])
        self.found, self.found_head, self.step = state["found"], state["found_head"], state["step"]
        self.distances = list(state["distances"])
