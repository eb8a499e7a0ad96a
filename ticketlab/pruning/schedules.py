"""Sparsity per IMP round, and per step of gradual magnitude pruning."""

from __future__ import annotations

from ..errors import TicketlabError

SCHEDULES = ("linear", "geometric")
DEFAULT_RATES = {"linear": 0.1, "geometric": 0.2}  # a schedule's --rate unless given


def sparsity_schedule(schedule: str, rate: float, target: float) -> list[float]:
    """Sparsity of every round, starting with the dense round 0 and ending at `target`.

    linear: `rate` of the ORIGINAL weights per round (0.1, 0.2, ... as in the BERT-tickets code);
    geometric: `rate` of the REMAINING weights per round (1 - (1 - rate)^r, as in open_lth and the CV code);
    or the levels themselves, rising and ending at `target` ("0.5,0.7,0.8,0.9,0.95": the levels a deployment
    compares), whatever `rate`.
    """
    if not 0.0 < target < 1.0:
        raise TicketlabError(f"target sparsity must be in (0, 1), got {target:g}")
    listed = listed_levels(schedule)
    if listed is not None:
        if listed[-1] != target:
            raise TicketlabError(f"the schedule {schedule} ends at {listed[-1]:g}: its target sparsity, not {target:g}")
        return [0.0, *listed]
    if not 0.0 < rate < 1.0:
        raise TicketlabError(f"pruning rate must be in (0, 1), got {rate:g}")
    if schedule not in SCHEDULES:
        raise TicketlabError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    if rate > target:
        raise TicketlabError(
            f"the {schedule} schedule's first round prunes {rate:g} (--rate), past the target sparsity {target:g}: "
            f"lower --rate to at most {target:g} or raise --sparsity"
        )
    levels = [0.0]
    while levels[-1] < target:
        r = len(levels)
        level = r * rate if schedule == "linear" else 1.0 - (1.0 - rate) ** r
        levels.append(min(round(level, 12), target))
    return levels


def listed_levels(schedule: str) -> list[float] | None:
    """The levels of a schedule written as them ("0.5,0.7,0.9": rising, each in (0, 1)); None for a named one."""
    if schedule in SCHEDULES or not schedule[:1].isdigit():
        return None
    try:
        levels = [float(text) for text in schedule.split(",")]
    except ValueError:
        raise TicketlabError(
            f"schedule {schedule!r} is neither {' nor '.join(SCHEDULES)} nor levels like 0.5,0.9"
        ) from None
    if not all(0.0 < level < 1.0 for level in levels) or any(b <= a for a, b in zip(levels, levels[1:])):
        raise TicketlabError(f"the levels of schedule {schedule} must rise, each in (0, 1)")
    return levels


LEVEL_TOLERANCE = 5e-4  # a level written to three decimals (0.59 for the geometric schedule's 0.5904) finds its round


def round_at(levels: list[float], level: float) -> int | None:
    """The round of a schedule at this sparsity level (to within LEVEL_TOLERANCE), if it has one."""
    return next((round for round, candidate in enumerate(levels) if abs(candidate - level) <= LEVEL_TOLERANCE), None)


def cubic_schedule(
    steps: int, start: float, end: float, prunings: int, target: float, initial: float = 0.0
) -> dict[int, float]:
    """Gradual magnitude pruning's sparsity (Zhu & Gupta 2017) at each step that prunes, in a run of `steps` optimizer
    steps: s_k = target + (initial - target) * (1 - k/n)^3 at step round(t0 + k * (t1 - t0) / n), k = 1 ... n =
    `prunings`, from t0 = `start` to t1 = `end` (fractions of `steps`; k = 0, step t0, is where the schedule starts
    from `initial`: it prunes nothing). Steps that coincide keep the highest; the last step that prunes reaches
    `target` exactly."""
    first, last = start * steps, end * steps
    schedule: dict[int, float] = {}
    for k in range(1, prunings + 1):
        step = max(1, round(first + k * (last - first) / prunings))
        rise = 1.0 - (1.0 - k / prunings) ** 3
        schedule[step] = target if k == prunings else initial + (target - initial) * rise
    return schedule
