"""EarlyBERT's search settings: standard library and ticketlab.config only, so that the command's help loads them
without torch (the checks that need torch are imported where a setting is checked)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import check_range, check_types, settings_hash
from ..errors import TicketlabError
from ..pruning.settle import SETTLE_THRESHOLD, SETTLE_WINDOW

DRAWS_PER_TRAINING = 100  # the default draw interval: 1% of the training steps


@dataclass(frozen=True)
class EarlyBirdConfig:
    """The search's settings; defaults: EarlyBERT's ratios and L1 coefficient, the early-bird test of You et al.
    2020."""

    heads: float = 1 / 3  # fraction of each layer's attention heads pruned
    ffn: float = 0.4  # fraction of all FFN neurons pruned, ranked globally
    l1: float = 1e-4  # coefficient of the L1 penalty on the slimming coefficients
    draw_every: int | None = None  # steps between draws (None: 1% of the training steps)
    window: int = SETTLE_WINDOW  # the early-bird test compares a draw with this many previous ones
    threshold: float = SETTLE_THRESHOLD  # ... and is passed when every normalized Hamming distance is below this

    def __post_init__(self) -> None:
        from ..pruning.settle import SettleTest
        from .draw import check_ratios  # torch

        check_types(self)
        check_ratios([], self.heads, self.ffn)
        SettleTest(self.window, self.threshold)
        check_range("--l1", self.l1, 0.0)
        if self.draw_every is not None and self.draw_every < 1:
            raise TicketlabError(f"--draw-every must be at least 1 step, got {self.draw_every}")

    def hash(self) -> str:
        return settings_hash(dataclasses.asdict(self))

    def branch(self, arm: str) -> str:
        return f"{arm}-{self.hash()}"
