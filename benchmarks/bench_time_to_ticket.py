"""Time to a ticket: what each finder pays to reach its highest matching sparsity (the paper's definition), against
IMP (goal: early-bird IMP or GMP reaches IMP's highest matching sparsity or higher at no more than 0.30 of IMP's cost).

Two setups, every finder (ticketlab.lottery.finders) on each, seeds 0, 1, 2, all trained one after another in this
one process (side by side, on the same machine state): `demo`, the run `make demo` makes (splade-tiny, Rotten
Tomatoes, the small recipe, linear 0.1 to 90%), and `minilm`, the minilm preset's Rotten Tomatoes recipe (minilm-l6,
2,000 training examples, 1 epoch, lr 1e-4, halving the remaining weights to 90%). Every level of every finder is
trained in full, so that each level's verdict is known; the ledger counts what a ticket at a level took (early-bird:
its rounds up to where each draw settled; each round starts from the mask and task head of that step, so a
`--final-only` run, which stops them there, draws the same tickets at exactly that cost).

Per setup and finder: the highest matching sparsity, the deciding metric there (mean ± std over seeds), the cost of
that ticket (to find and to train it: training FLOPs and seconds, the cost ledger's, mean over seeds), that cost over
IMP's at IMP's highest matching sparsity, and the IoU of the finder's masks with IMP's of the same seed and level.
Resumable: run it again to go on. Run: .venv/bin/python benchmarks/bench_time_to_ticket.py [--setups demo minilm]
[--seeds 3] [--out runs/time-to-ticket]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import ticketlab
from ticketlab.masks import iou, load_mask
from ticketlab.report.build import load_results
from ticketlab.report.cost import cost_table
from ticketlab.report.results import Result
from ticketlab.report.tables import make_tables
from ticketlab.report.verdict import highest_matching

SETUPS = {
    "demo": dict(model="splade-tiny", task="rotten-tomatoes"),
    "minilm": dict(
        model="minilm-l6",
        task="rotten-tomatoes",
        train_examples=2000,
        epochs=1,
        learning_rate=1e-4,
        schedule="geometric",
        rate=0.5,
    ),
}
# early-bird draws often enough for the window to fill within the first tenth of a round (267 steps: demo, 63: minilm)
DRAWS = {"demo": dict(draw_every=5, settle_window=5), "minilm": dict(draw_every=2, settle_window=3)}
FINDERS = ("imp", "early-bird", "gmp", "one-shot", "wanda")
GOAL = 0.30


def finder_options(setup: str, finder: str) -> dict:
    return {"finder": finder, **(DRAWS[setup] if finder == "early-bird" else {})}


def train_all(setups: list[str], seeds: int, out: Path) -> None:
    """Every finder of every setup for every seed, complete units skipped."""
    for setup in setups:
        for seed in range(seeds):
            for finder in FINDERS:
                ticketlab.find(**SETUPS[setup], out=out / setup, seed=seed, **finder_options(setup, finder))


def load(folder: Path) -> tuple[list[Result], pd.DataFrame, pd.DataFrame, str]:
    """A setup's results, the deciding metric's rows (arm, level, mean, std, n, matching_paper), the cost table and
    the deciding metric's name."""
    results, deciders = load_results([folder])
    ((task, (split, metric)),) = deciders.items()
    long = make_tables(results, deciders).long
    return results, long[long.decides], cost_table(results), f"{task}, {split} {metric}"


def summary(results: list[Result], deciding: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame:
    """One row per finder: its highest matching sparsity, metric, cost, cost over IMP's and IoU with IMP's masks."""
    dense = deciding[(deciding.arm == "imp") & (deciding.level == 0)].iloc[0]
    deciding = deciding[deciding.level > 0]
    rows = []
    for finder in FINDERS:
        arm = deciding[deciding.arm == finder]
        level = highest_matching(dict(zip(arm.level, arm.matching_paper.fillna(False))))
        at = arm[arm.level == level].iloc[0] if level is not None else None
        cost = costs[(costs.arm == finder) & (costs.level == level)]
        rows.append(
            {
                "finder": finder,
                "level": level,
                "metric": f"{at['mean']:.4f} ± {at['std']:.4f}" if at is not None else "—",
                "flops": float(cost.total_flops.iloc[0]) if len(cost) else math.nan,
                "seconds": float(cost.total_s.iloc[0]) if len(cost) else math.nan,
                "iou": mask_iou(results, finder, level) if finder != "imp" else 1.0,
            }
        )
    frame = pd.DataFrame(rows)
    imp = frame.set_index("finder").loc["imp"]
    frame["flops_ratio"], frame["seconds_ratio"] = frame.flops / imp.flops, frame.seconds / imp.seconds
    frame.attrs["dense"] = f"{dense['mean']:.4f} ± {dense['std']:.4f} over {dense.n} seeds"
    return frame


def by_level(deciding: pd.DataFrame, costs: pd.DataFrame) -> str:
    """Every finder at every level, as markdown: the metric (mean ± std over seeds; * where it matches under the
    paper's definition) and the cost of that ticket over IMP's at the same level (FLOPs), for setups where few levels
    match."""
    finders = [finder for finder in FINDERS if finder in set(deciding.arm)]
    total = costs.set_index(["arm", "level"]).total_flops
    lines = ["| sparsity | " + " | ".join(finders) + " |", "|---" * (len(finders) + 1) + "|"]
    for level in sorted(set(deciding.level[deciding.level > 0])):
        cells = []
        for finder in finders:
            at = deciding[(deciding.arm == finder) & (deciding.level == level)]
            if at.empty:
                cells.append("—")
                continue
            row, matching = at.iloc[0], bool(at.matching_paper.fillna(False).iloc[0])
            star = "*" if matching else ""
            ratio = total.get((finder, level), math.nan) / total.get(("imp", level), math.nan)
            cells.append(f"{row['mean']:.4f} ± {row['std']:.4f}{star} ({ratio:.2f}×)")
        lines.append(f"| {level:.1%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mask_iou(results: list[Result], finder: str, level: float | None) -> float:
    """Mean over seeds of the IoU of `finder`'s mask at `level` with IMP's of the same seed and level."""
    if level is None:
        return math.nan
    masks = {(r.arm, r.seed): r.mask for r in results if round(r.level, 6) == round(level, 6)}
    pairs = [(path, masks.get(("imp", seed))) for (arm, seed), path in masks.items() if arm == finder]
    return float(np.mean([iou(load_mask(a)[0], load_mask(b)[0]) for a, b in pairs if b is not None]))


def markdown(frame: pd.DataFrame) -> str:
    lines = [
        "| finder | highest matching | metric there | find + train (FLOPs) | seconds | / IMP (FLOPs) | / IMP (s) "
        "| IoU with IMP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in frame.itertuples(index=False):
        if row.level is None or pd.isna(row.level):  # no matching level: nothing to cost or compare
            lines.append(f"| {row.finder} | none |" + " — |" * 6)
            continue
        lines.append(
            f"| {row.finder} | {row.level:.1%} | {row.metric} | {row.flops:.3g} | {row.seconds:.0f} "
            f"| {row.flops_ratio:.2f} | {row.seconds_ratio:.2f} | {row.iou:.3f} |"
        )
    return "\n".join(lines)


def verdict(frame: pd.DataFrame) -> str:
    """Whether early-bird IMP or GMP reaches IMP's highest matching sparsity (or higher) within GOAL of its cost."""
    imp_level = frame.set_index("finder").loc["imp", "level"]
    cheap = [
        row.finder
        for row in frame.itertuples(index=False)
        if row.finder in ("early-bird", "gmp")
        and not pd.isna(imp_level)
        and not pd.isna(row.level)
        and row.level >= imp_level - 1e-9
        and row.flops_ratio <= GOAL
    ]
    outcome = f"met by {', '.join(cheap)}" if cheap else "not met"
    return f"goal (≤ {GOAL} of IMP's FLOPs at IMP's level or higher): {outcome}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", nargs="+", choices=SETUPS, default=list(SETUPS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/time-to-ticket"))
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    train_all(args.setups, args.seeds, args.out)
    for setup in args.setups:
        results, deciding, costs, decider = load(args.out / setup)
        frame = summary(results, deciding, costs)
        print(f"\n{setup} ({decider}; dense {frame.attrs['dense']})")
        print(markdown(frame))
        print(verdict(frame))
        print(f"\n{setup}, every level (* matching, paper's definition; in brackets: FLOPs over IMP's at that level)")
        print(by_level(deciding, costs))


if __name__ == "__main__":
    main()
