"""Branches of a lottery run: units trained from a mask and start weights that derive from the run (a control at an
IMP round, a transferred ticket, an EarlyBERT ticket). One `Branch` says what differs; `train_branch` is the one way
each is trained, recorded and sealed in branches/<name>/round_XX/ of the run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from safetensors.torch import load_file

from ..config import RunConfig
from ..controls import CONTROLS, Control
from ..errors import TicketlabError
from ..masks import Mask, apply_mask, save_mask, sparsity
from ..models import backbone
from ..store import RunStore, make
from ..store.records import RoundRecord
from ..train.batches import seeded_generator
from ..train.hooks import TrainHook
from ..train.launch import check_same_mask, on_main_process
from .context import RunContext


@dataclass(frozen=True)
class Branch:
    """A unit branched off a run: the mask it keeps and how it starts; the rest is the run's (recipe, data, seed)."""

    name: str  # its folder under the run's branches/
    round: int  # the run's round it stands beside
    level: float  # the sparsity level it stands for in tables
    mask: Mask  # the run's prunable weights it keeps
    start: Callable[[], None]  # sets the run's model to its start weights (not called when a checkpoint resumes it)
    description: str  # its progress bar's label
    provenance: Mapping[str, Any] | None = None  # its mask's metadata (default: the run's at `round`, and the branch)
    inputs: Callable[[Path], None] | None = None  # writes more inputs into its folder before it trains
    build: Callable[[torch.nn.Module], torch.nn.Module] | None = (
        None  # the model it trains (default: the run's, masked)
    )
    keep: Callable[[torch.nn.Module, Path], None] | None = None  # writes the trained model's files into its folder
    # fields of its record (ticketlab.store.records.RoundRecord) set from the trained record and model; its arm is the
    # branch's name unless they set it
    record: Callable[[RoundRecord, torch.nn.Module], dict[str, Any]] = lambda trained, model: {}


def train_branch(context: RunContext, branch: Branch) -> None:
    """Make `branch` a unit of the run of `context` (ticketlab.store.units): its mask and inputs written, its start
    weights set (unless its checkpoint resumes it), trained, recorded and sealed."""
    rounds, round, mask = context.store.branch(branch.name), branch.round, branch.mask
    check_same_mask(mask, f"{branch.name} at round {round}")
    model = context.model if branch.build is None else None

    def inputs() -> None:
        def write() -> None:
            metadata = branch.provenance or {**context.provenance(round, mask), "branch": branch.name}
            save_mask(rounds.mask_path(round), mask, metadata)
            if branch.inputs is not None:
                branch.inputs(rounds.round_dir(round))

        on_main_process(write)

    def start() -> None:
        branch.start()
        apply_mask(context.weights, mask)

    def trained() -> RoundRecord:
        nonlocal model
        if branch.build is None:
            record = context.train_masked(rounds, round, branch.level, mask, [], branch.description, distill=True)
        else:
            model = branch.build(context.model)
            measured = context.train_model(model, rounds, round, [], branch.description, distill=True)
            record = RoundRecord(round, branch.level, sparsity(mask), measured)
        return replace(record, **{"arm": branch.name, **branch.record(record, model)})

    keep = None if branch.keep is None else lambda folder: branch.keep(model, folder)
    make(rounds.unit(round), inputs=inputs, start=start, train=trained, keep=keep)


def run_controls(
    config: RunConfig,
    out: Path,
    controls: Sequence[str],
    rounds: Sequence[int] | None = None,
    checkpoint_every: int = 100,
    hooks: Sequence[TrainHook] = (),
    log_with: Sequence[str] = (),
) -> None:
    """Train each control at each pruned round of a complete lottery run (`rounds`: only these) that is a ticket (not
    early-bird's round that only drew the next mask), each logged to the trackers `log_with` names."""
    store = RunStore(out / config.name())
    levels = config.prune.levels()
    rounds = list(range(1, len(levels)) if rounds is None else rounds)
    incomplete = [r for r in [0, *rounds] if not store.is_complete(r)]
    if incomplete:
        raise TicketlabError(f"{store.path}: round {incomplete[0]} of the lottery run is not complete; run find first")
    for round in [0, *rounds]:
        store.verified(round)  # the controls read its masks, heads and dense weights
    rounds = [round for round in rounds if not store.metrics(round).get("search_only")]
    context: RunContext | None = None
    with store.lock():
        for name in controls:
            control = CONTROLS.get(name)
            for round in rounds:
                if on_main_process(lambda: store.branch(name).intact(round)):
                    continue
                context = context or RunContext(config, store, checkpoint_every, hooks, log_with)
                rng = seeded_generator(config.train.seed, name, round)
                mask = control.mask(context, round, levels[round], rng)
                if mask is not None:
                    train_branch(context, control_branch(context, name, control, round, mask, rng))


def control_branch(
    context: RunContext, name: str, control: Control, round: int, mask: Mask, rng: torch.Generator
) -> Branch:
    """Control `name` at IMP round `round`: its mask, and IMP's starting head of that round with θ0 changed by it."""

    def start() -> None:
        context.model.load_state_dict(load_file(str(context.store.head_path(round))), strict=False)
        backbone(context.model).load_state_dict(context.theta0)
        weights = control.weights({n: context.theta0[n] for n in context.weights}, context, rng)
        with torch.no_grad():
            for weight_name, weight in context.weights.items():
                weight.copy_(weights[weight_name])

    level = context.levels[round]
    return Branch(name, round, level, mask, start, f"{name} · sparsity {level:.1%}")
