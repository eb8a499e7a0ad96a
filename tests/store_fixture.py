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
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ticketlab.config import PruneConfig, RunConfig, TrainConfig
from ticketlab.masks import Mask, ones_like, save_mask, sparsity
from ticketlab.pruning import magnitude_prune, random_prune
from ticketlab.store import RunStore

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
    if task == "rotten-tomatoes":
        return {"dev": {"accuracy": accuracy}, "test": {"accuracy": accuracy - 0.01}}
    loss = IMP_LOSS[level][seed] if arm == "imp" else 3.0 - 5.0 * accuracy
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


def write_store(root: Path) -> Path:
    """Write every run of the fixture under `root` (a folder of runs); returns `root`."""
    imp_masks = {}
    for task in ("rotten-tomatoes", "mlm"):
        for seed in SEEDS:
            imp_masks[task, seed] = _write_run(root, task, seed)
    for (task, arm, source, level) in ACCURACY:
        if arm == "transfer":
            for seed in SEEDS:
                _write_transfer(root, task, source, level, seed, imp_masks[source, seed][LEVELS.index(level)])
    _write_rewind_run(root)
    return root


def config(task: str, seed: int, rewind_step: int = 0) -> RunConfig:
    return RunConfig(
        model="splade-tiny", model_hash="fixture", task=task, data=None,
        train=TrainConfig(epochs=1, seed=seed), prune=PruneConfig(sparsity=0.6, rate=0.2, rewind_step=rewind_step),
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
    for (t, arm, _, level) in ACCURACY:
        if t != task or arm in ("imp", "transfer"):
            continue
        r = LEVELS.index(level)
        if arm == "random":
            mask = random_prune(weights, masks[0], level, scope="global", generator=generator)
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
    save_mask(store.mask_path(round), mask, {"format": "ticketlab-mask/1", "round": round, "sparsity": f"{sparsity(mask):.6f}"})
    store.complete(round, {
        "round": round, "level": level, "sparsity": sparsity(mask),
        "steps": 10, "train_loss": 0.5, "wall_time_s": 1.0, **record,
    })


def _weights(task: str, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) for name, shape in weight_shapes(task).items()}

