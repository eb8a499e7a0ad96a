"""Pruning methods, registered by name: each is a pure function (weights, mask, sparsity, rankings, granularity) ->
mask. Its names are imported on first use (PEP 562): schedules.py and settle.py's defaults load without torch, for the
settings (ticketlab.config) and the command's help."""

from __future__ import annotations

from ..lazy import export_lazily

_EXPORTS = {
    ".granularity": ("WEIGHT", "Granularity", "check_fits", "check_levels", "parse_granularity"),
    ".magnitude": ("PRUNING_METHODS", "Rankings", "check_scope", "magnitude_prune", "scope_rankings"),
    ".random": ("random_prune",),
    ".schedules": ("SCHEDULES", "cubic_schedule", "listed_levels", "round_at", "sparsity_schedule"),
}
export_lazily(__name__, _EXPORTS)
