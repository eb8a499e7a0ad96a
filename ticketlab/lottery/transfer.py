"""Transfer: a ticket found on one task, trained on another from θ0; a transfer grid's lottery runs (ticketlab.plan
lists the grid).

A transfer is a branch of the target task's lottery run (same model, recipe and seed), so the target's dense
round 0, its IMP tickets and its controls sit beside it and the report compares them directly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from ..api import read_ticket
from ..arms import RANDOM, TRANSFER
from ..config import PruneConfig, RunConfig
from ..errors import TicketlabError
from ..masks import Mask
from ..store import RunStore
from ..tasks import TASKS
from ..train.launch import on_main_process
from ..train.tracking import check_trackers
from .branches import Branch, run_controls, train_branch
from .context import RunContext
from .imp import run_lottery
from .settings import resolve_config

PROVENANCE = ("base_model", "model_hash", "task", "round", "seed", "config_hash")


def transfer(
    ticket: str | Path,
    task: str,
    *,
    model: str | None = None,
    data: str | None = None,
    sparsity: float = PruneConfig.sparsity,
    out: str | Path = "runs",
    checkpoint_every: int = 100,
    log_with: Sequence[str] = (),
    **options: Any,
) -> dict[str, Any]:
    """Train `ticket` ("RUN[:ROUND]" or a mask file) on `task` from the pre-trained weights; returns its record.

    The target run is the one `find` makes with the same options (seed: the ticket's unless given); its dense
    round 0 is trained first, as the baseline. A ticket of another base model is refused. `log_with`: the trackers
    both units log to.
    """
    log_with = check_trackers(log_with)
    mask, provenance = _read(ticket)
    branch, round, seed = _source(provenance, ticket)
    if options.get("seed") is None:
        options["seed"] = seed
    config = resolve_config(model or provenance["base_model"], task, data, sparsity, **options)
    if config.model_hash != provenance["model_hash"]:
        raise TicketlabError(
            f"the ticket was found on {provenance['base_model']} (weights {provenance['model_hash']}), "
            f"not on {model or provenance['base_model']} (weights {config.model_hash}): "
            "a ticket fits only its own base model"
        )
    run_lottery(config, Path(out), checkpoint_every=checkpoint_every, last_round=0, log_with=log_with)
    store = RunStore(Path(out) / config.name())
    with store.lock():
        if not on_main_process(lambda: store.branch(branch).intact(round)):
            context = RunContext(config, store, checkpoint_every, (), log_with)
            source = {key: provenance[key] for key in ("task", "round", "config_hash", "sparsity")}
            level = float(provenance.get("level", provenance["sparsity"]))
            description = f"{branch} · sparsity {level:.1%}"
            record = {"arm": TRANSFER, "source": source}
            fitted = context.fit(mask)
            train_branch(
                context,
                Branch(
                    branch,
                    round,
                    level,
                    fitted,
                    context.start_from_theta0,
                    description,
                    record=lambda trained, model: record,
                ),
            )
    return store.branch(branch).metrics(round)


def ticket_seed(ticket: str | Path) -> int:
    """The seed a transfer of `ticket` runs with unless given one: the ticket's own."""
    return _source(_read(ticket)[1], ticket)[2]


def _read(ticket: str | Path) -> tuple[Mask, dict[str, str]]:
    """The ticket's mask and provenance, refused where the provenance lacks what a transfer needs."""
    mask, provenance = read_ticket(ticket)
    missing = [key for key in PROVENANCE if key not in provenance]
    if missing:
        raise TicketlabError(
            f"{ticket} carries no provenance ({missing[0]} missing): only tickets that ticketlab found transfer"
        )
    return mask, provenance


def _source(provenance: dict[str, str], ticket: str | Path) -> tuple[str, int, int]:
    """The branch a ticket's transfer is stored in, its round and its seed, from the ticket's metadata: data from
    outside, so each part is checked (a registered task, a config hash, numbers) before it names a folder."""
    task, config_hash, round, seed = (provenance[key] for key in ("task", "config_hash", "round", "seed"))
    numbers = all(re.fullmatch(r"[0-9]{1,9}", n) for n in (round, seed))
    if task not in TASKS or not re.fullmatch(r"[0-9a-f]{10}", config_hash) or not numbers:
        raise TicketlabError(
            f"{ticket}: its metadata does not name a ticketlab run (task {task!r}, config hash "
            f"{config_hash!r}, round {round!r}, seed {seed!r})"
        )
    return f"transfer_{task}_{config_hash}", int(round), int(seed)


def grid_run(config: RunConfig, out: Path, round: int, checkpoint_every: int, log_with: Sequence[str] = ()) -> None:
    """A grid task's lottery run, and its random control at the grid's round (logged to the trackers `log_with`
    names)."""
    run_lottery(config, out, checkpoint_every=checkpoint_every, log_with=log_with)
    run_controls(config, out, [RANDOM], rounds=[round], checkpoint_every=checkpoint_every, log_with=log_with)
