"""Sparsity per IMP round."""

from __future__ import annotations

from ..errors import TicketlabError

SCHEDULES = ("linear", "geometric")


def sparsity_schedule(schedule: str, rate: float, target: float) -> list[float]:
    """Sparsity of every round, starting with the dense round 0 and ending at `target`.

    linear: `rate` of the ORIGINAL weights per round (0.1, 0.2, ... as in the BERT-tickets code);
    geometric: `rate` of the REMAINING weights per round (1 - (1 - rate)^r, as in open_lth and the CV code).
    """
    if not 0.0 < target < 1.0:
        raise TicketlabError(f"target sparsity must be in (0, 1), got {target:g}")
    if not 0.0 < rate < 1.0:
        raise TicketlabError(f"pruning rate must be in (0, 1), got {rate:g}")
    if schedule not in SCHEDULES:
        raise TicketlabError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    levels = [0.0]
    while levels[-1] < target:
        r = len(levels)
        level = r * rate if schedule == "linear" else 1.0 - (1.0 - rate) ** r
        levels.append(min(round(level, 12), target))
    return levels


LEVEL_TOLERANCE = 5e-4  # a level written to three decimals (0.59 for the geometric schedule's 0.5904) finds its round


def round_at(levels: list[float], level: float) -> int | None:
    """The round of a schedule at this sparsity level (to within LEVEL_TOLERANCE), if it has one."""
    return next((round for round, candidate in enumerate(levels) if abs(candidate - level) <= LEVEL_TOLERANCE), None)
