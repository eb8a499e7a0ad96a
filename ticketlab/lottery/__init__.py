"""Lottery runs: their settings, the context their units share, the IMP rounds, the branches (controls, transfers,
EarlyBERT's tickets) and the transfer grid's runs."""

from .branches import Branch, run_controls, train_branch
from .context import RunContext
from .imp import LotteryResult, find, run_lottery
from .settings import resolve_config
from .transfer import grid_run, ticket_seed, transfer

__all__ = [
    "Branch",
    "LotteryResult",
    "RunContext",
    "find",
    "grid_run",
    "resolve_config",
    "run_controls",
    "run_lottery",
    "ticket_seed",
    "train_branch",
    "transfer",
]
