"""EarlyBERT (Chen et al., ACL 2021): structured early-bird tickets, found early in training and trained as a
physically smaller model.

    search    the dense model trains from θ0 with a slimming coefficient on every attention head and FFN neuron
              (L1 penalty); every `draw_every` steps a ticket is drawn from the coefficients, and the search stops
              once the draws are stable (the early bird; search.py, draw.py)
    compact   the ticket's heads and neurons are cut out of the pre-trained weights (compact.py)
    train     the smaller model fine-tunes with the dense recipe; a random structured ticket with the same counts
              per layer is the baseline, and the same seed's dense round 0 the reference for metrics and time

Both tickets are branches of the task's context run (ticketlab.context.Branch): earlybert-<hash> and
earlybert-random-<hash>, where <hash> names the EarlyBERT settings.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from ..arms import EARLYBERT, EARLYBERT_RANDOM
from ..atomic import write_tensors
from ..config import PruneConfig
from ..lottery import Branch, RunContext, resolve_config, run_lottery, train_branch
from ..masks import load_mask, save_mask, sparsity
from ..models import config_values, resolve_model
from ..pruning.settle import SettleTest
from ..store import RunStore, Unit, make
from ..store.records import EarlyBertSearch, RoundRecord
from ..train.batches import seeded_generator
from ..train.checkpoint import usable_checkpoint
from ..train.hooks import TrainHook
from ..train.launch import on_main_process
from ..train.loop import total_steps
from ..train.tracking import check_trackers
from .compact import compact, structure_mask
from .draw import Structure, check_ratios, random_structure
from .hf import save_compact
from .search import EarlyBirdSearch, slimming
from .settings import DRAWS_PER_TRAINING, EarlyBirdConfig

ARMS = (EARLYBERT, EARLYBERT_RANDOM)


@dataclass
class EarlyBertResult:
    """Where the context run lives, and the records of its dense round 0 and of both structured tickets."""

    run: Path
    dense: dict[str, Any]
    earlybert: dict[str, Any]
    random: dict[str, Any]


def earlybert(
    model: str = "splade-tiny",
    task: str = "rotten-tomatoes",
    *,
    data: str | None = None,
    out: str | Path = "runs",
    settings: EarlyBirdConfig = EarlyBirdConfig(),
    sparsity: float = PruneConfig.sparsity,
    checkpoint_every: int = 100,
    hooks: Sequence[TrainHook] = (),
    log_with: Sequence[str] = (),
    **options: Any,
) -> EarlyBertResult:
    """Search an early-bird structured ticket on `task`, train it compacted, and train a random structured ticket
    with the same counts; `options` are TrainConfig fields (e.g. epochs=1, seed=2). The dense baseline is round 0
    of the context run `find` makes with the same options (`sparsity` and PruneConfig fields only pick that run).
    Re-running skips what is complete and resumes the rest. `log_with`: the trackers every unit logs to."""
    log_with = check_trackers(log_with)
    config = resolve_config(model, task, data, sparsity, **options)
    check_ratios(_layer_shapes(resolve_model(config.model)), settings.heads, settings.ffn)
    run_lottery(config, Path(out), checkpoint_every=checkpoint_every, hooks=hooks, last_round=0, log_with=log_with)
    store = RunStore(Path(out) / config.name())
    branches = {arm: store.branch(settings.branch(arm)) for arm in ARMS}
    search_dir = branches[EARLYBERT].path / "search"
    with store.lock():
        if not on_main_process(lambda: _complete(branches.values(), search_dir)):
            context = RunContext(config, store, checkpoint_every, hooks, log_with)
            ticket, search = _search(context, settings, search_dir)
            random = random_structure(ticket, seeded_generator(config.train.seed, EARLYBERT_RANDOM, settings.hash()))
            for arm, structure, found_by in ((EARLYBERT, ticket, search), (EARLYBERT_RANDOM, random, None)):
                if not branches[arm].is_complete(0):
                    _train_ticket(context, settings.branch(arm), arm, structure, found_by)
    return EarlyBertResult(store.path, store.metrics(0), *(branches[arm].metrics(0) for arm in ARMS))


def _complete(branches: Iterable[RunStore], search_dir: Path) -> bool:
    """On the main process: whether the search and both tickets are complete and intact (what is damaged is reported
    and reopened, leftovers of a kill swept)."""
    searched = _search_unit(search_dir).intact()
    return all([rounds.intact(0) for rounds in branches]) and searched


def _search_unit(folder: Path) -> Unit:
    """The search as a unit of the store: its record is search.json, its checkpoint search.pt."""
    return Unit(folder, {"search": True}, folder / "search.pt", "search.json", again="searching again")


def _search(context: RunContext, settings: EarlyBirdConfig, folder: Path) -> tuple[Structure, EarlyBertSearch]:
    """The early-bird ticket and the search's record, made as a unit of its own in `folder` (ticketlab.store.units:
    a complete search is not repeated)."""
    unit = _search_unit(folder)
    if unit.is_complete():
        return load_mask(folder / "ticket.safetensors")[0], EarlyBertSearch.from_json(unit.record())
    config = context.config
    draw_every = settings.draw_every or max(
        1, round(total_steps(len(context.data.features["train"]), config.train) / DRAWS_PER_TRAINING)
    )
    found: dict[str, Any] = {}  # what the search leaves for `keep`: itself and its coefficients

    def trained() -> EarlyBertSearch:
        with slimming(context.model) as coefficients:
            test = SettleTest(settings.window, settings.threshold)
            search = EarlyBirdSearch(coefficients, settings.heads, settings.ffn, settings.l1, draw_every, test)
            result = context.run_training(context.model, unit.checkpoint, [search], "EarlyBERT search", round=0)
            if not search.found and (not search.draws or search.draws[-1].step != result.steps):
                search.draw(result.steps)  # no early bird: the ticket of the whole training
            found.update(search=search, scores={name: c.detach().cpu() for name, c in coefficients.scales().items()})
        return EarlyBertSearch(
            settings={**dataclasses.asdict(settings), "draw_every": draw_every},
            steps=result.steps,
            time_s=result.time_s,
            draw_step=search.draws[-1].step,
            early_bird=search.found,
            draws=[dataclasses.asdict(d) for d in search.draws],
            cost=result.cost(eval_time_s=0.0),  # what finding the ticket spent: the report's cost to find it
        )

    def keep(folder: Path) -> None:
        search = found["search"]
        metadata = {
            **_provenance(context, structure_mask(context.model, search.ticket)),
            "draw_step": search.draws[-1].step,
        }
        write_tensors(folder / "coefficients.safetensors", found["scores"], {k: str(v) for k, v in metadata.items()})
        save_mask(folder / "ticket.safetensors", search.ticket, metadata)

    record = make(unit, start=context.start_from_theta0, train=trained, keep=keep)
    return found["search"].ticket, record


def _train_ticket(
    context: RunContext, branch: str, arm: str, structure: Structure, search: EarlyBertSearch | None
) -> None:
    """Cut `structure` out of θ0, train the smaller model with the run's recipe, keep it (model/) and record it
    with the `search` that found it (None for the random ticket), whose time counts in the time ratio. A resumed
    training goes on with the structure it started with."""
    rounds = context.store.branch(branch)
    if usable_checkpoint(rounds.checkpoint_path(0)):
        structure = load_mask(rounds.structure_path(0))[0]
    mask = structure_mask(context.model, structure)
    metadata = {**_provenance(context, mask), "branch": branch}
    heads = sum(int(structure[k].sum()) for k in structure if k.startswith("heads."))
    neurons = sum(int(structure[k].sum()) for k in structure if k.startswith("ffn."))
    dense_params = sum(p.numel() for p in context.model.parameters())

    def build(model: torch.nn.Module) -> torch.nn.Module:
        context.start_from_theta0()  # a resumed training too: the checkpoint then loads into this shape
        return compact(copy.deepcopy(model), structure)

    def record(trained: RoundRecord, model: torch.nn.Module) -> dict[str, Any]:
        dense_time = context.store.metrics(0).get("train_time_s")
        layers = len(structure) // 2
        return {
            "arm": arm,
            "structure": {
                "heads": [structure[f"heads.{i}"].nonzero().flatten().tolist() for i in range(layers)],
                "heads_total": [structure[f"heads.{i}"].numel() for i in range(layers)],
                "ffn_kept": [int(structure[f"ffn.{i}"].sum()) for i in range(layers)],
                "ffn_total": [structure[f"ffn.{i}"].numel() for i in range(layers)],
                "params": sum(p.numel() for p in model.parameters()),
                "dense_params": dense_params,
            },
            "search": search,
            "dense_train_time_s": dense_time,
            "time_ratio": ((search.time_s if search else 0.0) + trained.trained.train_time_s) / dense_time
            if dense_time
            else None,
        }

    train_branch(
        context,
        Branch(
            branch,
            0,
            sparsity(mask),
            mask,
            context.start_from_theta0,
            f"{arm} · {heads} heads, {neurons} FFN neurons",
            provenance={**metadata, "format": "ticketlab-mask/1"},
            inputs=lambda folder: save_mask(rounds.structure_path(0), structure, metadata),
            build=build,
            keep=lambda model, folder: save_compact(model, folder / "model", context.data.processor),
            record=record,
        ),
    )


def _provenance(context: RunContext, mask: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A structured ticket's provenance: the run's, at the sparsity its heads and neurons amount to."""
    return {**context.provenance(0, mask), "level": f"{sparsity(mask):.6f}", "format": "ticketlab-structure/1"}


def _layer_shapes(path: Path) -> list[tuple[int, int]]:
    """(heads, FFN neurons) of each layer, from the model's config: the ratios are checked before any training."""
    heads, neurons, layers = config_values(path, "num_attention_heads", "intermediate_size", "num_hidden_layers")
    return [(heads, neurons)] * layers
