"""Early-bird IMP: while a round trains, the mask the next pruning would draw is drawn again every few steps; once the
newest draw lies within a normalized Hamming distance of each of the previous few (the test EarlyBERT's search uses,
ticketlab.earlybert.draw.EarlyBird), it is the next round's mask, and a round that only searches stops there."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..config import PruneConfig
from ..earlybert.draw import EarlyBird
from ..masks import Mask
from ..store import RunStore
from ..train import TrainHook


def draw_path(store: RunStore, round: int) -> Path:
    """The mask round `round` drew for the next round (where its draw settled, or from its final weights)."""
    return store.round_dir(round) / "draw.safetensors"


class SettleWatch(TrainHook):
    """Draws the next mask (`draw`, from the weights as they train) every `draw_every` steps and applies the
    early-bird test to the draws; with `stop`, training ends once it is passed."""

    def __init__(self, draw: Callable[[], Mask], settings: PruneConfig, stop: bool):
        self.draw, self.every, self.stop = draw, settings.draw_every, stop
        self.test = EarlyBird(settings.settle_window, settings.settle_threshold)
        self.found: Mask | None = None
        self.step: int | None = None  # the step whose draw passed the test
        self.distances: list[float | None] = []  # each draw's largest distance to the previous window

    def after_step(self, step: int, model: torch.nn.Module) -> None:
        if self.found is None and step % self.every == 0:
            mask = self.draw()
            observed = self.test.observe(step, mask)
            self.distances.append(observed.window)
            if self.test.is_found(observed):
                self.found, self.step = mask, step

    def should_stop(self) -> bool:
        return self.stop and self.found is not None

    def result(self, steps: int) -> tuple[Mask, dict[str, Any]]:
        """The next round's mask and what the round records of its search (`steps`: the steps it trained): where the
        draw settled, or, where it never did, the draw of the final weights, as IMP's."""
        settled = self.found is not None
        mask = self.found if settled else self.draw()
        record = {"step": self.step if settled else steps, "settled": settled, "distances": self.distances}
        return mask, {"draw": record, **({"search_only": True} if self.stop else {})}

    def state_dict(self) -> dict[str, Any]:
        return {"test": self.test.state_dict(), "found": self.found, "step": self.step, "distances": self.distances}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.test.load_state_dict(state["test"])
        self.found, self.step, self.distances = state["found"], state["step"], list(state["distances"])
