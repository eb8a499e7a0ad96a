"""Pruning methods, registered by name: each is a pure function (weights, mask, sparsity, rankings, granularity) ->
mask."""

from ..registry import Registry
from .granularity import WEIGHT, Granularity, check_fits, check_levels, parse_granularity
from .magnitude import SCOPES, Rankings, check_scope, magnitude_prune, scope_rankings
from .random import random_prune
from .schedules import SCHEDULES, cubic_schedule, listed_levels, round_at, sparsity_schedule

PRUNING_METHODS = Registry("pruning method")
PRUNING_METHODS.register("magnitude")(magnitude_prune)

__all__ = [
    "PRUNING_METHODS",
    "SCHEDULES",
    "SCOPES",
    "WEIGHT",
    "Granularity",
    "Rankings",
    "check_fits",
    "check_levels",
    "check_scope",
    "cubic_schedule",
    "listed_levels",
    "magnitude_prune",
    "parse_granularity",
    "random_prune",
    "round_at",
    "scope_rankings",
    "sparsity_schedule",
]
