"""A synthetic run store with known numbers, written without training: rotten-tomatoes and mlm, seeds 0-2, IMP to
60% sparsity (linear, 20% a round), a few controls and both transfers at 40%, one IMP-with-rewinding run.

Masks are real: nested magnitude masks of seeded random weights over a tiny 2-layer, hidden-32 BERT's prunable
matrices (rotten-tomatoes adds the pooler; mlm has none, so a transferred mlm ticket leaves it dense).

Verdicts by construction (dev accuracy decides; seeds 0, 1, 2):
- rotten-tomatoes: dense 0.80/0.82/0.78 (mean 0.80, std 0.02). IMP 20%: every seed above its dense; 40%: mean 0.80
  (paper: matching) but seed 1 below its dense (strict: not); 60%: neither. Highest: paper 40%, strict 20%.
- mlm accuracy: dense 0.20/0.21/0.22 (mean 0.21, std 0.01). 20%: equal to dense on every seed (ties match);
  40%: paper only; 60%: mean 0.20 = 0.21 - 0.01 exactly (a tie: paper matches), strict not. Highest: 60%, 20%.
- mlm loss (lower is better; --metric mlm=loss): dense 2.0/1.9/1.8. Highest: paper 40%, strict 20%.

write_earlybert adds EarlyBERT branches (structured tickets: 2 heads and 64 FFN neurons a layer) to those runs, with
the numbers of EARLYBERT; see its docstring. write_costs adds cost ledgers to the units (see its docstring).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import NamedTuple

import torch

from ticketlab.config import PruneConfig, RunConfig, TrainConfig
from ticketlab.masks import Mask, ones_like, save_mask, sparsity
from ticketlab.pruning import magnitude_prune, random_prune
from ticketlab.store import RunStore
from ticketlab.train.flops import FLOPS_ESTIMATE

SEEDS = (0, 1, 2)
LEVELS = (0.0, 0.2, 0.4, 0.6)
REWIND_STEP = 10

# dev accuracy of seeds 0, 1, 2 for (task, arm, source, level)
ACCURACY: dict[tuple[str, str, str | None, float], tuple[float, ...]] = {
    ("rotten-tomatoes", "imp", None, 0.0): (0.80, 0.82, 0.78),
    ("rotten-tomatoes", "imp", None, 0.2): (0.81, 0.83, 0.79),
    ("rotten-tomatoes", "imp", None, 0.4): (0.80, 0.81, 0.79),
    ("rotten-tomatoes", "imp", None, 0.6): (0.70, 0.72, 0.68),
    ("rotten-tomatoes", "random", None, 0.2): (0.78, 0.79, 0.77),
    ("rotten-tomatoes", "random", None, 0.4): (0.70, 0.71, 0.69),
    ("rotten-tomatoes", "random", None, 0.6): (0.60, 0.61, 0.59),
    ("rotten-tomatoes", "reinit", None, 0.2): (0.75, 0.76, 0.74),
    ("rotten-tomatoes", "reinit", None, 0.4): (0.68, 0.69, 0.67),
    ("rotten-tomatoes", "reinit", None, 0.6): (0.58, 0.59, 0.57),
    ("rotten-tomatoes", "one-shot", None, 0.4): (0.79, 0.80, 0.78),
    ("rotten-tomatoes", "shuffle", None, 0.4): (0.72, 0.73, 0.71),
    ("rotten-tomatoes", "inverted", None, 0.4): (0.55, 0.56, 0.54),
    ("rotten-tomatoes", "transfer", "mlm", 0.4): (0.79, 0.80, 0.78),
    ("mlm", "imp", None, 0.0): (0.20, 0.21, 0.22),
    ("mlm", "imp", None, 0.2): (0.20, 0.21, 0.22),
    ("mlm", "imp", None, 0.4): (0.21, 0.22, 0.20),
    ("mlm", "imp", None, 0.6): (0.19, 0.20, 0.21),
    ("mlm", "random", None, 0.2): (0.15, 0.16, 0.14),
    ("mlm", "random", None, 0.4): (0.12, 0.13, 0.11),
    ("mlm", "random", None, 0.6): (0.10, 0.11, 0.09),
    ("mlm", "noise", None, 0.6): (0.17, 0.18, 0.16),
    ("mlm", "transfer", "rotten-tomatoes", 0.4): (0.18, 0.19, 0.20),
}
# mlm loss of seeds 0, 1, 2 for IMP's levels; other arms: 3 - 5 * accuracy
IMP_LOSS = {0.0: (2.0, 1.9, 1.8), 0.2: (1.9, 1.8, 1.7), 0.4: (2.1, 1.8, 1.8), 0.6: (2.5, 2.4, 2.3)}
# the rewinding run (seed 0 only): its round 0 is dense too, but the baseline stays IMP's round 0
REWIND_ACCURACY = {0.0: 0.50, 0.2: 0.82, 0.4: 0.81}


def metrics(task: str, arm: str, source: str | None, level: float, seed: int) -> dict[str, dict[str, float]]:
    """Every metric of every evaluation split, as metrics.json holds them."""
    accuracy = ACCURACY[task, arm, source, level][seed]
    return task_metrics(task, accuracy, IMP_LOSS[level][seed] if arm == "imp" and task == "mlm" else None)


def task_metrics(task: str, accuracy: float, loss: float | None = None) -> dict[str, dict[str, float]]:
    """rotten-tomatoes: dev accuracy and test accuracy 0.01 lower; mlm: accuracy, loss (default 3 - 5 * accuracy),
    perplexity."""
    if task == "rotten-tomatoes":
        return {"dev": {"accuracy": accuracy}, "test": {"accuracy": accuracy - 0.01}}
    loss = 3.0 - 5.0 * accuracy if loss is None else loss
    return {"dev": {"accuracy": accuracy, "loss": loss, "perplexity": math.exp(loss)}}


def weight_shapes(task: str) -> dict[str, tuple[int, int]]:
    """The prunable matrices of a tiny 2-layer BERT, hidden 32, FFN 64 (the pooler only on a classifier)."""
    shapes = {}
    for layer in range(2):
        prefix = f"encoder.layer.{layer}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[f"{prefix}{name}.weight"] = (32, 32)
        shapes[f"{prefix}intermediate.dense.weight"] = (64, 32)
        shapes[f"{prefix}output.dense.weight"] = (32, 64)
    if task != "mlm":
        shapes["pooler.dense.weight"] = (32, 32)
    return shapes


class Structured(NamedTuple):
    """A structured ticket of one seed: the heads kept in layers 0 and 1, the FFN neurons kept in each (EarlyBERT keeps
    the first ones, the random ticket the last ones), dev accuracy, training time in seconds."""

    heads: tuple[tuple[int, ...], tuple[int, ...]]
    ffn: tuple[int, int]
    accuracy: float
    train_s: float


class Search(NamedTuple):
    """EarlyBERT's search of one seed: its time and the window distance of each draw (one every 5 steps)."""

    time_s: float
    windows: tuple[float | None, ...]


EARLYBERT_SETTINGS = {  # a run can hold several: each has its own pair of branches
    "a": {"heads": 0.5, "ffn": 0.375, "l1": 1e-4, "window": 2, "threshold": 0.1, "draw_every": 5},
    "b": {"heads": 0.0, "ffn": 0.5, "l1": 1e-4, "window": 2, "threshold": 0.1, "draw_every": 5},
}
# (task, settings, seed) -> (the EarlyBERT ticket, its search, the random structured ticket with the same counts)
EARLYBERT: dict[tuple[str, str, int], tuple[Structured, Search, Structured]] = {
    ("rotten-tomatoes", "a", 0): (
        Structured(((0,), (1,)), (48, 32), 0.79, 10.0),
        Search(2.0, (None, None, 0.4, 0.25, 0.09)),
        Structured(((1,), (0,)), (48, 32), 0.70, 9.0),
    ),
    ("rotten-tomatoes", "a", 1): (
        Structured(((0,), (1,)), (44, 36), 0.80, 11.0),
        Search(3.0, (None, None, 0.3, 0.07)),
        Structured(((0,), (0,)), (44, 36), 0.72, 10.0),
    ),
    ("rotten-tomatoes", "a", 2): (
        Structured(((1,), (1,)), (40, 40), 0.78, 12.0),
        Search(4.0, (None, None, 0.3, 0.2, 0.15, 0.12)),
        Structured(((1,), (1,)), (40, 40), 0.71, 9.0),
    ),
    ("rotten-tomatoes", "b", 0): (
        Structured(((0, 1), (0, 1)), (30, 34), 0.81, 8.0),
        Search(1.0, (None, None, 0.05)),
        Structured(((0, 1), (0, 1)), (30, 34), 0.75, 8.0),
    ),
    ("rotten-tomatoes", "b", 1): (
        Structured(((0, 1), (0, 1)), (32, 32), 0.80, 9.0),
        Search(1.0, (None, None, 0.08)),
        Structured(((0, 1), (0, 1)), (32, 32), 0.76, 8.0),
    ),
    ("mlm", "a", 0): (
        Structured(((0,), (0,)), (48, 32), 0.19, 20.0),
        Search(5.0, (None, None, 0.05)),
        Structured(((1,), (1,)), (48, 32), 0.15, 18.0),
    ),
    ("mlm", "a", 1): (
        Structured(((0,), (1,)), (40, 40), 0.21, 22.0),
        Search(5.0, (None, None, 0.06)),
        Structured(((0,), (1,)), (40, 40), 0.14, 18.0),
    ),
}
DENSE_TRAIN_S = {
    ("rotten-tomatoes", 0): 20.0,
    ("rotten-tomatoes", 1): 22.0,
}  # round 0's train_time_s; the others lack it
# dense_train_time_s in the EarlyBERT records; rotten-tomatoes seed 0's differs from its round 0 (which wins)
STORED_DENSE_TRAIN_S = {
    ("rotten-tomatoes", 0): 25.0,
    ("rotten-tomatoes", 1): 22.0,
    ("rotten-tomatoes", 2): 18.0,
    ("mlm", 0): 30.0,
    ("mlm", 1): 30.0,
}
DENSE_PARAMS = 100_000
HEAD_PARAMS, NEURON_PARAMS = 4 * 16 * 32 + 3 * 16, 2 * 32 + 1  # the parameters one head and one FFN neuron own


def write_store(root: Path) -> Path:
    """Write every run of the fixture under `root` (a folder of runs); returns `root`."""
    imp_masks = {}
    for task in ("rotten-tomatoes", "mlm"):
        for seed in SEEDS:
            imp_masks[task, seed] = _write_run(root, task, seed)
    for task, arm, source, level in ACCURACY:
        if arm == "transfer":
            for seed in SEEDS:
                _write_transfer(root, task, source, level, seed, imp_masks[source, seed][LEVELS.index(level)])
    _write_rewind_run(root)
    return root


def write_earlybert(root: Path) -> Path:
    """Add the EarlyBERT branches of EARLYBERT to the runs write_store wrote under `root`, and DENSE_TRAIN_S to their
    round 0; returns `root`.

    A search draws every 5 steps and stops at the first window distance below 0.1 (the last draw without one).
    rotten-tomatoes "a": draws at 25, 20, 30 (no early bird); "b": 15, 15; mlm "a": 15, 15.
    """
    for (task, seed), seconds in DENSE_TRAIN_S.items():
        store = RunStore(root / config(task, seed).name())
        store.unit(0).seal({**store.metrics(0), "train_time_s": seconds})
    for (task, name, seed), (ticket, search, random_ticket) in EARLYBERT.items():
        store = RunStore(root / config(task, seed).name())
        settings = EARLYBERT_SETTINGS[name]
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
        draw = next((j for j, w in enumerate(search.windows) if w is not None and w < settings["threshold"]), None)
        draws = [
            {"step": 5 * (j + 1), "distance": None if j == 0 else 0.6 * (w or 0.5), "window": w}
            for j, w in enumerate(search.windows)
        ]
        found = {
            "steps": draws[-1]["step"],
            "time_s": search.time_s,
            "draw_step": draws[-1]["step"],
            "early_bird": draw is not None,
            **settings,
            "draws": draws,
        }
        _write_structured(
            store.branch(f"earlybert-{digest}"), task, seed, "earlybert", ticket, search.time_s, search=found
        )
        _write_structured(
            store.branch(f"earlybert-random-{digest}"), task, seed, "earlybert-random", random_ticket, 0.0
        )
    return root


def write_costs(root: Path) -> Path:
    """Give every unit of the runs under `root` a cost ledger, but the rewinding run's (stored as before the ledger
    existed); returns `root`. A unit of a task trained with seed s spent (s + 1) x UNIT_FLOPS[task] FLOPs in
    (s + 1) x UNIT_FLOPS[task] / 1e8 seconds, whatever its sparsity (FLOPs estimate dense computation); an EarlyBERT
    search a quarter of that."""
    for folder in sorted(root.glob("*/config.json")):
        store = RunStore(folder.parent)
        config = store.config()
        if config.prune.rewind_step:
            continue
        for rounds in [store, *(store.branch(name) for name in store.branches())]:
            for r in rounds.completed_rounds():
                record = rounds.metrics(r)
                record["cost"] = ledger(config.task, config.train.seed)
                if "search" in record:
                    record["search"]["cost"] = ledger(config.task, config.train.seed, SEARCH_SHARE)
                rounds.unit(r).seal(record)
    return root


UNIT_FLOPS = {"rotten-tomatoes": 1e9, "mlm": 2e9}
SEARCH_SHARE = 0.25


def ledger(task: str, seed: int, share: float = 1.0) -> dict:
    """A cost ledger as ticketlab.train.loop.TrainResult.cost writes it, with the numbers write_costs gives."""
    flops = (seed + 1) * UNIT_FLOPS[task] * share
    return {
        "steps": 10,
        "examples": 160,
        "train_time_s": flops / 1e8,
        "eval_time_s": 1.0,
        "forward_flops": flops / 30,
        "train_flops": flops,
        "flops": FLOPS_ESTIMATE,
    }


def _write_structured(
    branch: RunStore, task: str, seed: int, arm: str, ticket: Structured, search_s: float, **search
) -> None:
    """A structured ticket's round 0: its mask over the prunable weights, structure.safetensors, metrics.json."""
    last = arm == "earlybert-random"
    heads = {f"heads.{i}": torch.tensor([h in kept for h in range(2)]) for i, kept in enumerate(ticket.heads)}
    ffn = {f"ffn.{i}": torch.arange(64).flip(0) < k if last else torch.arange(64) < k for i, k in enumerate(ticket.ffn)}
    mask = {name: torch.ones(shape, dtype=torch.bool) for name, shape in weight_shapes(task).items()}
    for i in range(2):
        prefix = f"encoder.layer.{i}."
        rows = heads[f"heads.{i}"].repeat_interleave(16)
        for name in ("query", "key", "value"):
            mask[f"{prefix}attention.self.{name}.weight"][~rows] = False
        mask[f"{prefix}attention.output.dense.weight"][:, ~rows] = False
        mask[f"{prefix}intermediate.dense.weight"][~ffn[f"ffn.{i}"]] = False
        mask[f"{prefix}output.dense.weight"][:, ~ffn[f"ffn.{i}"]] = False
    save_mask(branch.structure_path(0), {**heads, **ffn}, {"format": "ticketlab-structure/1"})
    pruned_heads, pruned_neurons = 4 - sum(map(len, ticket.heads)), 128 - sum(ticket.ffn)
    dense_s = STORED_DENSE_TRAIN_S[task, seed]
    _complete(
        branch,
        0,
        sparsity(mask),
        mask,
        {
            "arm": arm,
            **task_metrics(task, ticket.accuracy),
            "train_time_s": ticket.train_s,
            "structure": {
                "heads": [list(kept) for kept in ticket.heads],
                "heads_total": [2, 2],
                "ffn_kept": list(ticket.ffn),
                "ffn_total": [64, 64],
                "dense_params": DENSE_PARAMS,
                "params": DENSE_PARAMS - HEAD_PARAMS * pruned_heads - NEURON_PARAMS * pruned_neurons,
            },
            **search,
            "dense_train_time_s": dense_s,
            "time_ratio": (search_s + ticket.train_s) / dense_s,
        },
    )


def config(task: str, seed: int, rewind_step: int = 0) -> RunConfig:
    return RunConfig(
        model="splade-tiny",
        model_hash="fixture",
        task=task,
        data=None,
        train=TrainConfig(epochs=1, seed=seed),
        prune=PruneConfig(sparsity=0.6, rate=0.2, rewind_step=rewind_step),
    )


def _write_run(root: Path, task: str, seed: int) -> list[Mask]:
    """IMP rounds and the controls of one seed; returns the IMP masks of every round."""
    store = RunStore(root / config(task, seed).name())
    store.initialize(config(task, seed))
    weights = _weights(task, seed)
    masks = [ones_like(weights)]
    for level in LEVELS[1:]:
        masks.append(magnitude_prune(weights, masks[-1], level))
    for r, (level, mask) in enumerate(zip(LEVELS, masks)):
        _complete(store, r, level, mask, metrics(task, "imp", None, level, seed))
    generator = torch.Generator().manual_seed(seed)
    for t, arm, _, level in ACCURACY:
        if t != task or arm in ("imp", "transfer"):
            continue
        r = LEVELS.index(level)
        if arm == "random":
            mask = random_prune(weights, masks[0], level, generator)
        elif arm == "one-shot":
            mask = magnitude_prune({n: w.flip(0) for n, w in weights.items()}, masks[0], level)
        elif arm == "inverted":
            mask = {n: ~kept for n, kept in masks[LEVELS.index(round(1 - level, 12))].items()}
        else:
            mask = masks[r]
        _complete(store.branch(arm), r, level, mask, {"arm": arm, **metrics(task, arm, None, level, seed)})
    return masks


def _write_transfer(root: Path, target: str, source: str, level: float, seed: int, mask: Mask) -> None:
    """The source's IMP ticket of this seed, fitted to the target (a missing pooler stays dense), as a branch."""
    source_config = config(source, seed)
    shapes = weight_shapes(target)
    fitted = {n: mask[n] if n in mask else torch.ones(shapes[n], dtype=torch.bool) for n in shapes}
    branch = RunStore(root / config(target, seed).name()).branch(f"transfer_{source}_{source_config.hash()}")
    r = LEVELS.index(level)
    record = {
        "arm": "transfer",
        "source": {"task": source, "run": source_config.name(), "round": r, "config_hash": source_config.hash()},
        **metrics(target, "transfer", source, level, seed),
    }
    _complete(branch, r, level, fitted, record)


def _write_rewind_run(root: Path) -> None:
    """IMP with rewinding to step 10, seed 0, rotten-tomatoes: rounds 0-2 complete, round 3 interrupted."""
    store = RunStore(root / config("rotten-tomatoes", 0, REWIND_STEP).name())
    store.initialize(config("rotten-tomatoes", 0, REWIND_STEP))
    weights = _weights("rotten-tomatoes", 0)
    mask = ones_like(weights)
    for r, level in enumerate(LEVELS[:3]):
        mask = magnitude_prune(weights, mask, level)
        accuracy = REWIND_ACCURACY[level]
        _complete(store, r, level, mask, {"dev": {"accuracy": accuracy}, "test": {"accuracy": accuracy - 0.01}})
    save_mask(store.mask_path(3), magnitude_prune(weights, mask, LEVELS[3]), {"round": 3})  # no COMPLETE


def _complete(store: RunStore, round: int, level: float, mask: Mask, record: dict) -> None:
    save_mask(
        store.mask_path(round),
        mask,
        {"format": "ticketlab-mask/1", "round": round, "sparsity": f"{sparsity(mask):.6f}"},
    )
    store.unit(round).seal(
        {
            "round": round,
            "level": level,
            "sparsity": sparsity(mask),
            "steps": 10,
            "train_loss": 0.5,
            "wall_time_s": 1.0,
            **record,
        },
    )


def _weights(task: str, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) for name, shape in weight_shapes(task).items()}
