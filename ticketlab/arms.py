"""The arm vocabulary: the names under which a trained (sub)network is recorded (a round's finder, a branch's arm in
metrics.json, a registered control) and reported, their display order and their labels.

It imports nothing of the package, so that finders, controls, branches and the report all name arms from here.
"""

from __future__ import annotations

# finders (ticketlab.lottery.finders): the arm of a run's own rounds
IMP = "imp"
IMP_REWIND = "imp-rewind"  # IMP rewinding to a step other than 0: "imp-rewind-<step>" (rewind_arm)
EARLY_BIRD = "early-bird"
ONE_SHOT = "one-shot"  # a finder and a control alike
WANDA = "wanda"
GMP = "gmp"
GMP_SEARCH = "gmp-search"  # the record of GMP's pruning run: no ticket
# controls (ticketlab.controls)
RANDOM = "random"
RANDOM_PER_MATRIX = "random-per-matrix"
REINIT = "reinit"
SHUFFLE = "shuffle"
NOISE = "noise"
INVERTED = "inverted"
# branches of their own
TRANSFER = "transfer"
EARLYBERT = "earlybert"
EARLYBERT_RANDOM = "earlybert-random"
DENSE = "dense"  # the report's name for IMP's round 0, every comparison's baseline

# whole attention heads and FFN neurons removed (EarlyBERT): their sparsity is not a level of IMP's schedule
STRUCTURED_ARMS = frozenset({EARLYBERT, EARLYBERT_RANDOM})
GRANULARITY_MARK = " · "  # "imp · block:8x8": an arm of a run pruned at another granularity, read beside others
DISTILLED = "distilled"  # "imp · distilled": an arm of a run whose tickets learn from its dense round too

ARM_LABELS = {  # display order
    DENSE: "dense",
    IMP: "IMP",
    IMP_REWIND: "IMP, rewind to step {step}",
    EARLY_BIRD: "early-bird IMP",
    GMP: "gradual magnitude pruning",
    ONE_SHOT: "one-shot magnitude",
    WANDA: "Wanda",
    RANDOM: "random pruning",
    RANDOM_PER_MATRIX: "random pruning per matrix",
    REINIT: "random re-init",
    SHUFFLE: "shuffled θ0",
    NOISE: "noisy θ0",
    INVERTED: "inverted mask",
    TRANSFER: "transfer from {source}",
    EARLYBERT: "EarlyBERT",
    EARLYBERT_RANDOM: "random structured ticket",
}


def rewind_arm(step: int) -> str:
    """IMP's arm when it rewinds to `step`: "imp" at 0, else "imp-rewind-<step>"."""
    return IMP if step == 0 else f"{IMP_REWIND}-{step}"


def arm_family(arm: str) -> str:
    """An arm's name without the step it rewinds to ("imp-rewind-100" -> "imp-rewind"): its key in ARM_LABELS."""
    return IMP_REWIND if arm.startswith(f"{IMP_REWIND}-") else arm


def split_arm(arm: str) -> tuple[str, str | None]:
    """An arm's name and what it carries, its granularity and distillation: "imp · block:8x8" -> ("imp", "block:8x8");
    "imp · distilled" -> ("imp", "distilled"); "imp" -> ("imp", None)."""
    name, _, granularity = arm.partition(GRANULARITY_MARK)
    return name, granularity or None


def arm_label(arm: str, source: str | None = None) -> str:
    """How tables and plots name an arm, e.g. "IMP, rewind to step 100", "transfer from mlm", "IMP · block:8x8"."""
    name, granularity = split_arm(arm)
    label = ARM_LABELS.get(arm_family(name), name).format(step=name.rpartition("-")[2], source=source)
    return f"{label}{GRANULARITY_MARK}{granularity}" if granularity else label


def arm_order(arm: str, source: str | None = None) -> tuple:
    """Sort key: the order of ARM_LABELS, rewind steps ascending, transfers by source, unknown arms last; an arm of
    another granularity right after its weight-granular one."""
    name, _ = split_arm(arm)
    family = arm_family(name)
    rank = list(ARM_LABELS).index(family) if family in ARM_LABELS else len(ARM_LABELS)
    return rank, int(name.rpartition("-")[2]) if family == IMP_REWIND else 0, source or "", arm
