"""Pruning methods, registered by name: each is a pure function (weights, mask, sparsity, scope) -> mask."""

from ..registry import Registry
from .magnitude import SCOPES, check_scope, magnitude_prune
from .random import random_prune
from .schedules import SCHEDULES, round_at, sparsity_schedule

METHODS = Registry("pruning method")
METHODS.register("magnitude")(magnitude_prune)

__all__ = ["METHODS", "SCHEDULES", "SCOPES", "check_scope", "magnitude_prune", "random_prune", "round_at", "sparsity_schedule"]
