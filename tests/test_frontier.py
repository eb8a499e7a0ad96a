"""The accuracy/latency frontier of exported tickets: joined with their runs' results, each seed's fastest format,
the Pareto frontier, and `ticketlab report --exports` end to end on a tiny run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers import run_cli, trained_record

from ticketlab.errors import TicketlabError
from ticketlab.report.frontier import frontier_table, timed_exports
from ticketlab.report.results import Result

DECIDERS = {"rotten-tomatoes": ("dev", "accuracy")}


def result(arm: str, level: float, seed: int, test: float, round: int) -> Result:
    run = Path(f"/runs/rotten-tomatoes_m_levels-0.9_{arm}{seed}hash")  # a run per seed, named by its settings' hash
    metrics = {"dev": {"accuracy": test}, "test": {"accuracy": test}}
    return Result(
        task="rotten-tomatoes",
        model="m",
        seed=seed,
        arm=arm,
        source=None,
        round=round,
        level=level,
        sparsity=level,
        metrics=metrics,
        mask=run / f"round_{round:02d}" / "mask.safetensors",
        run=run,
        record=trained_record(round, level, metrics),
    )


def export(arm: str, round: int, seed: int, speedup: float, format: str = "sparse", batch: int = 1) -> dict:
    ticket = {"config_hash": f"{arm}{seed}hash", "round": str(round), "seed": str(seed)}
    return {"format": format, "ticket": ticket, "tokens": [batch, 128], "latency": {"speedup": speedup}}


def test_each_seeds_fastest_format_counts_and_the_frontier_is_the_undominated():
    results = [result("imp", 0.0, seed, 0.80, 0) for seed in (0, 1)]
    results += [result("imp", 0.5, seed, 0.80 - 0.01 * seed, 1) for seed in (0, 1)]  # as good, faster
    results += [result("imp", 0.9, seed, 0.70, 2) for seed in (0, 1)]  # worse, much faster
    results += [result("wanda", 0.9, seed, 0.65, 2) for seed in (0, 1)]  # worse and slower than IMP at 90%
    exports = [export("imp", 1, seed, 1.5) for seed in (0, 1)]
    exports += [export("imp", 2, 0, 3.0), export("imp", 2, 0, 2.0, "sparse-int8"), export("imp", 2, 1, 3.2)]
    exports += [export("wanda", 2, seed, 2.5) for seed in (0, 1)]
    exports += [export("imp", 0, 0, 0.9)]  # the dense round exported: not a ticket
    table = frontier_table(results, exports, DECIDERS).set_index(["arm", "level"])
    assert list(table.index) == [("dense", 0.0), ("imp", 0.5), ("imp", 0.9), ("wanda", 0.9)]
    assert table.loc[("imp", 0.9), "speedup"] == pytest.approx(3.1)  # seed 0's sparse, not its slower sparse-int8
    assert table.loc[("imp", 0.5), "mean"] == pytest.approx(0.795) and table.loc[("imp", 0.5), "n"] == 2
    assert table.loc[("imp", 0.5), "metric"] == "test accuracy"  # the held-out split where the task has one
    assert table.frontier.to_dict() == {
        ("dense", 0.0): True,  # the best accuracy
        ("imp", 0.5): True,
        ("imp", 0.9): True,
        ("wanda", 0.9): False,
    }


def test_exports_of_other_runs_are_left_out_and_a_folder_without_exports_is_refused(tmp_path):
    results = [result("imp", 0.0, 0, 0.8, 0), result("imp", 0.5, 0, 0.8, 1)]
    table = frontier_table(results, [export("gmp", 1, 0, 2.0)], DECIDERS)
    assert isinstance(table, pd.DataFrame) and table.empty
    with pytest.raises(TicketlabError, match="holds no ticketlab export"):
        timed_exports([tmp_path])


def test_report_draws_the_frontier_of_exported_tickets(tiny_model_dir, reviews, tmp_path):
    run_cli(
        "find", "--model", tiny_model_dir, "--data", reviews, "--train-examples", "32", "--batch-size", "8",
        "--schedule", "0.5", "--sparsity", "0.5", "--save-weights", "--out", tmp_path / "runs",
    )  # fmt: skip
    (run,) = (tmp_path / "runs").glob("rotten-tomatoes_*")
    for batch in (1, 4):
        run_cli(
            "export", f"{run}:1", "--format", "sparse", "--batch-size", batch, "--length", "16",
            "--out", tmp_path / "exports" / f"b{batch}",
        )  # fmt: skip
    run_cli("report", tmp_path / "runs", "--exports", tmp_path / "exports")
    report = tmp_path / "runs" / "report"
    frontier = pd.read_csv(report / "frontier.csv")
    assert sorted(frontier.batch) == [1, 1, 4, 4] and set(frontier.arm) == {"dense", "imp"}
    assert (report / "frontier_rotten-tomatoes.png").is_file()
    assert "## Shipped tickets: accuracy against speed" in (report / "report.md").read_text()
