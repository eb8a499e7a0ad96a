"""The early-bird settle test (You et al. 2020), over masks of any layout: a mask drawn again and again as training
goes has settled once the newest draw lies within a normalized Hamming distance of each of the previous few.
EarlyBERT's search puts its structures to it, early-bird IMP the masks the next pruning would draw."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import TicketlabError

if TYPE_CHECKING:
    from ..masks import Mask

SETTLE_WINDOW = 5  # the draws the newest is compared with
SETTLE_THRESHOLD = 0.1  # the normalized Hamming distance below which two draws count as close


@dataclass(frozen=True)
class Draw:
    """One draw put to the test: its step, its distance to the previous draw, and the largest distance to each of
    the previous `window` draws (None until there are that many)."""

    step: int
    distance: float | None
    window: float | None


class SettleTest:
    """A mask has settled once the newest draw lies within `threshold` (normalized Hamming distance) of each of the
    previous `window` draws."""

    def __init__(self, window: int = SETTLE_WINDOW, threshold: float = SETTLE_THRESHOLD):
        if window < 1:
            raise TicketlabError(f"the early-bird window must be at least 1 draw, got {window}")
        if not 0.0 < threshold < 1.0:
            raise TicketlabError(f"the early-bird threshold is a distance in (0, 1), got {threshold:g}")
        self.window, self.threshold = window, threshold
        self.recent: list[Mask] = []  # the last `window` draws before the newest

    def observe(self, step: int, mask: Mask) -> Draw:
        """Record a draw and measure how far it moved."""
        from ..masks import hamming  # torch: here, so that the defaults above load without it (ticketlab.config)

        distance = hamming(mask, self.recent[-1]) if self.recent else None
        window = max(hamming(mask, old) for old in self.recent) if len(self.recent) == self.window else None
        self.recent = [*self.recent, mask][-self.window :]
        return Draw(step, distance, window)

    def is_found(self, draw: Draw) -> bool:
        """Whether the draw has settled."""
        return draw.window is not None and draw.window < self.threshold

    def state_dict(self) -> dict[str, Any]:
        return {"recent": self.recent}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.recent = list(state["recent"])
