"""Pruning methods, registered by name: each is a pure function (weights, mask, sparsity, rankings) -> mask."""

from ..registry import Registry
from .magnitude import SCOPES, Rankings, check_scope, magnitude_prune, scope_rankings
from .random import random_prune
from .schedules import SCHEDULES, round_at, sparsity_schedule

METHODS = Registry("pruning method")
METHODS.register("magnitude")(magnitude_prune)

__all__ = [
    "METHODS",
    "SCHEDULES",
    "SCOPES",
    "Rankings",
    "check_scope",
    "magnitude_prune",
    "random_prune",
    "round_at",
    "scope_rankings",
    "sparsity_schedule",
]
