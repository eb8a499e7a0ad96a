"""Is a subnetwork matching? Pure functions on the per-seed values of one metric.

Two definitions, reported side by side:
- paper (Chen et al. 2020): the subnetwork's mean over seeds is within one standard deviation of the dense
  model's mean (mean >= dense mean - dense std; for lower-is-better metrics mean <= dense mean + dense std);
- strict: every seed's subnetwork is at least as good as the dense model of the same seed.
Ties (up to float rounding) count as matching. Standard deviations are sample ones over seeds (ddof=1), 0 with
a single seed.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, NamedTuple

import numpy as np

from ..errors import TicketlabError

LOWER_IS_BETTER = frozenset({"loss", "perplexity"})


class Summary(NamedTuple):
    n: int
    mean: float
    std: float
    min: float
    max: float


def summarize(values: Iterable[float]) -> Summary:
    """n, mean, sample std (ddof=1; 0 for a single value), min and max of the values over seeds."""
    array = np.asarray(list(values), dtype=float)
    if not array.size:
        raise ValueError("no values to summarize")
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return Summary(int(array.size), float(array.mean()), std, float(array.min()), float(array.max()))


def at_least_as_good(value: float, reference: float, metric: str) -> bool:
    """`value` is as good as `reference` or better (ties within float rounding included)."""
    if math.isclose(value, reference, rel_tol=1e-9, abs_tol=1e-12):
        return True
    return value < reference if metric in LOWER_IS_BETTER else value > reference


def is_matching_paper(values: Mapping[int, float], dense: Mapping[int, float], metric: str) -> bool:
    """The paper's definition: the mean of `values` is within one std of the mean of `dense` (both keyed by seed)."""
    subnetwork, baseline = summarize(values.values()), summarize(dense.values())
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    return at_least_as_good(subnetwork.mean, baseline.mean + sign * baseline.std, metric)


def is_matching_strict(values: Mapping[int, float], dense: Mapping[int, float], metric: str) -> bool:
    """The strict definition: for every seed of `values`, at least the dense model of that seed.

    A seed without a dense value cannot be judged: raises TicketlabError naming it.
    """
    unjudged = sorted(set(values) - set(dense))
    if unjudged:
        raise TicketlabError(
            f"seed {unjudged[0]} has no dense model to compare with: the strict definition cannot judge it"
        )
    return all(at_least_as_good(value, dense[seed], metric) for seed, value in values.items())


def highest_matching(verdicts: Mapping[float, bool]) -> float | None:
    """The highest sparsity level whose verdict is matching; None if none is."""
    return max((level for level, matching in verdicts.items() if matching), default=None)
