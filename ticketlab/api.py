"""Tickets for users: read one from a run or a file, put one on a model."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .errors import TicketlabError
from .masks import Mask, apply_mask, fit_mask, load_mask
from .models import layer_stack_weights, prunable_weights
from .store import RunStore


def load_ticket(source: str | Path, round: int | None = None) -> Mask:
    """The mask of a run's round (default: its last complete round), or of a mask file."""
    return read_ticket(source, round)[0]


def read_ticket(source: str | Path, round: int | None = None) -> tuple[Mask, dict[str, str]]:
    """A ticket and its provenance metadata. `source`: a mask file, a run folder, or "RUN:ROUND"."""
    return load_mask(ticket_file(source, round))


def ticket_file(source: str | Path, round: int | None = None) -> Path:
    """The mask file a ticket reference names: a mask file itself, or a run's round, refused unless complete and
    intact."""
    located = locate_ticket(source, round)
    if located is None:
        return Path(source)
    store, round = located
    store.verified(round)
    return store.mask_path(round)


def locate_ticket(source: str | Path, round: int | None = None) -> tuple[RunStore, int] | None:
    """The run and complete round a ticket reference names ("RUN:ROUND", or a run folder: its last complete round),
    or None for a mask file; a one-line error for anything else."""
    path = Path(source)
    text = str(source)
    if round is None and not path.exists() and ":" in text:
        head, _, tail = text.rpartition(":")
        if tail.isdigit():
            path, round = Path(head), int(tail)
    if path.is_file():
        return None
    if not path.exists():
        raise TicketlabError(f"ticket not found: {source}")
    store = RunStore.open(path)
    rounds = store.completed_rounds()
    if not rounds:
        raise TicketlabError(f"{path} has no complete round yet")
    round = rounds[-1] if round is None else round
    if round not in rounds:
        raise TicketlabError(f"{path} has no complete round {round}; complete: {', '.join(map(str, rounds))}")
    return store, round


def apply_ticket(model: nn.Module, mask: Mask) -> nn.Module:
    """Zero the weights the ticket prunes; refuses a mask made for another model (names, shapes).
    A weight outside the layer stack that the ticket does not cover (the pooler, for an MLM ticket) stays dense."""
    weights = prunable_weights(model)
    apply_mask(weights, fit_mask(mask, weights, required=layer_stack_weights(model)))
    return model
