"""The verdicts on synthetic numbers, and the report built from a synthetic run store (no training)."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from store_fixture import ACCURACY, IMP_LOSS, config, write_store

from ticketlab.errors import TicketlabError
from ticketlab.report.build import load_results
from ticketlab.report.claims import CLAIMS, claims_table
from ticketlab.report.console import print_tables
from ticketlab.report.tables import make_tables
from ticketlab.report.verdict import (
    LOWER_IS_BETTER,
    highest_matching,
    is_matching_paper,
    is_matching_strict,
    summarize,
)
from ticketlab.store import RunStore

DENSE = {0: 0.80, 1: 0.82, 2: 0.78}  # mean 0.80, sample std 0.02


def test_summary_uses_the_sample_std_and_zero_for_one_seed():
    assert summarize([0.80, 0.82, 0.78]) == pytest.approx((3, 0.80, 0.02, 0.78, 0.82))
    assert summarize([0.5, 0.7]).std == pytest.approx(np.sqrt(0.02))  # ddof=1: 0.1414, not 0.1
    assert summarize([0.7]) == (1, 0.7, 0.0, 0.7, 0.7)


def test_paper_definition_is_within_one_std_of_the_dense_mean():
    assert is_matching_paper({0: 0.79, 1: 0.80, 2: 0.78}, DENSE, "accuracy")  # 0.79 >= 0.78
    assert is_matching_paper({0: 0.77, 1: 0.78, 2: 0.79}, DENSE, "accuracy")  # 0.78: a tie matches
    assert not is_matching_paper({0: 0.77, 1: 0.78, 2: 0.78}, DENSE, "accuracy")  # 0.7767


def test_strict_definition_compares_each_seed_with_its_own_dense_model():
    assert is_matching_strict({0: 0.80, 1: 0.83, 2: 0.79}, DENSE, "accuracy")  # seed 0 ties
    better_on_average = {0: 0.85, 1: 0.81, 2: 0.80}  # mean 0.82, but seed 1 is below its 0.82
    assert is_matching_paper(better_on_average, DENSE, "accuracy")
    assert not is_matching_strict(better_on_average, DENSE, "accuracy")


def test_strict_definition_cannot_judge_a_seed_without_a_dense_model():
    with pytest.raises(TicketlabError, match="seed 3 has no dense model"):
        is_matching_strict({0: 0.9, 3: 0.9}, DENSE, "accuracy")


def test_one_seed_has_no_spread_to_forgive():
    assert is_matching_paper({0: 0.80}, {0: 0.80}, "accuracy")
    assert not is_matching_paper({0: 0.7999}, {0: 0.80}, "accuracy")
    assert not is_matching_strict({0: 0.7999}, {0: 0.80}, "accuracy")


def test_lower_is_better_flips_both_definitions():
    assert {"loss", "perplexity"} <= LOWER_IS_BETTER
    dense = {0: 2.0, 1: 1.9, 2: 1.8}  # mean 1.9, std 0.1: the paper allows a mean up to 2.0
    assert is_matching_paper({0: 2.1, 1: 2.0, 2: 1.9}, dense, "loss")  # mean 2.0: a tie
    assert not is_matching_paper({0: 2.1, 1: 2.1, 2: 1.9}, dense, "loss")
    assert is_matching_strict({0: 1.9, 1: 1.9, 2: 1.7}, dense, "loss")
    assert not is_matching_strict({0: 1.9, 1: 1.91, 2: 1.7}, dense, "loss")
    assert not is_matching_paper({0: 0.5}, {0: 0.4}, "perplexity")
    assert is_matching_paper({0: 0.5}, {0: 0.4}, "accuracy")


def test_highest_matching_level():
    assert highest_matching({0.2: True, 0.4: False, 0.6: True, 0.8: False}) == 0.6
    assert highest_matching({0.2: False, 0.4: False}) is None


# ---- the report, from the synthetic run store -------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("store") / "runs")


@pytest.fixture
def build(monkeypatch):
    """ticketlab.report.build with draw_all replaced by a fake that writes one PNG and records its call."""
    module = importlib.import_module("ticketlab.report.build")
    calls = []

    def draw_all(results, deciders, out):
        calls.append((results, deciders, out))
        (out / "plots").mkdir(exist_ok=True)
        (out / "plots" / "curve.png").write_bytes(b"\x89PNG")
        return [out / "plots" / "curve.png"]

    monkeypatch.setattr(module, "draw_all", draw_all)
    monkeypatch.setattr(module, "calls", calls, raising=False)
    return module


def _row(frame: pd.DataFrame, **where) -> pd.Series:
    match = frame[np.logical_and.reduce([frame[k].fillna("") == v for k, v in where.items()])]
    assert len(match) == 1, where
    return match.iloc[0]


def test_report_files_and_numbers(store, build):
    out = build.build_report([store])
    assert out == store / "report"
    assert {p.name for p in out.iterdir()} >= {
        "report.md",
        "results.csv",
        "matching.csv",
        "table2.csv",
        "transfer.csv",
        "plots",
    }
    results, deciders, plot_dir = build.calls[0]
    assert deciders == {"mlm": ("dev", "accuracy"), "rotten-tomatoes": ("dev", "accuracy")} and plot_dir == out
    assert len({(r.task, r.arm, r.source, r.level, r.seed) for r in results}) == len(results) == 3 * len(ACCURACY) + 3

    long = pd.read_csv(out / "results.csv")
    for (task, arm, source, level), values in ACCURACY.items():
        row = _row(long, task=task, arm=arm, source=source or "", level=level, split="dev", metric="accuracy")
        assert (row.n, row["mean"], row["std"], row["min"], row["max"]) == pytest.approx(
            (3, np.mean(values), np.std(values, ddof=1), min(values), max(values))
        )
    for level, losses in IMP_LOSS.items():
        row = _row(long, task="mlm", arm="imp", level=level, metric="loss")
        assert (row["mean"], row["std"]) == pytest.approx((np.mean(losses), np.std(losses, ddof=1)))
        assert pd.isna(row.matching_paper)  # flags only on the deciding metric
    test = _row(long, task="rotten-tomatoes", arm="imp", level=0.4, split="test")
    assert test["mean"] == pytest.approx(0.79)
    rewind = long[long.arm == "imp-rewind-10"]
    assert sorted(set(rewind.level)) == [0.0, 0.2, 0.4] and set(rewind.n) == {1}  # round 3 is not complete

    def flags(**where):
        row = _row(long, split="dev", metric="accuracy", **where)
        return bool(row.matching_paper), bool(row.matching_strict)

    assert flags(task="rotten-tomatoes", arm="imp", level=0.2) == (True, True)
    assert flags(task="rotten-tomatoes", arm="imp", level=0.4) == (True, False)
    assert flags(task="rotten-tomatoes", arm="imp", level=0.6) == (False, False)
    assert flags(task="rotten-tomatoes", arm="random", level=0.2) == (True, False)  # mean 0.78 ties dense - std
    assert flags(task="mlm", arm="imp", level=0.2) == (True, True)  # equal to dense on every seed
    assert flags(task="mlm", arm="imp", level=0.6) == (True, False)
    assert flags(task="rotten-tomatoes", arm="transfer", source="mlm", level=0.4) == (True, False)
    transfer = _row(long, task="rotten-tomatoes", arm="transfer", level=0.4, split="dev")
    assert transfer.sparsity < 0.4  # an mlm ticket leaves the pooler dense: grouped by level all the same

    matching = pd.read_csv(out / "matching.csv").set_index("task")
    assert matching.loc[
        "rotten-tomatoes", ["dense_mean", "dense_std", "highest_paper", "highest_strict"]
    ].tolist() == pytest.approx(
        [0.80, 0.02, 0.4, 0.2]
    )  # the dense baseline is IMP's round 0, not the rewinding run's (0.50)
    assert matching.loc[
        "mlm", ["dense_mean", "dense_std", "highest_paper", "highest_strict"]
    ].tolist() == pytest.approx([0.21, 0.01, 0.6, 0.2])


def test_table2_has_the_dense_model_and_every_arm_at_the_highest_matching_sparsity(store, build):
    table2 = pd.read_csv(build.build_report([store]) / "table2.csv")
    rt = table2[(table2.task == "rotten-tomatoes") & (table2.metric == "accuracy") & (table2.split == "dev")]
    assert rt.iloc[0][["selected_by", "arm", "level"]].tolist() == ["dense", "dense", 0.0]
    paper = rt[rt.selected_by == "paper"]
    assert set(paper.level) == {0.4}
    assert paper.label.tolist() == [
        "IMP",
        "IMP, rewind to step 10",
        "one-shot magnitude",
        "random pruning",
        "random re-init",
        "shuffled θ0",
        "inverted mask",
        "transfer from mlm",
    ]
    assert set(rt[rt.selected_by == "strict"].arm) == {"imp", "imp-rewind-10", "random", "reinit"}
    mlm = table2[table2.task == "mlm"]
    assert set(mlm.metric) == {"accuracy", "loss", "perplexity"}  # every metric of the task
    assert set(mlm[mlm.selected_by == "paper"].level) == {0.6}


def test_transfer_matrix(store, build):
    matrix = pd.read_csv(build.build_report([store]) / "transfer.csv")
    rows = {(r.source, r.target): r for r in matrix.itertuples()}
    assert set(rows) == {
        ("mlm", "rotten-tomatoes"),
        ("rotten-tomatoes", "mlm"),
        ("mlm", "mlm"),
        ("rotten-tomatoes", "rotten-tomatoes"),
    }
    to_rt, to_mlm = rows["mlm", "rotten-tomatoes"], rows["rotten-tomatoes", "mlm"]
    assert (to_rt.level, to_rt.mean, to_rt.minus_dense, to_rt.minus_random) == pytest.approx((0.4, 0.79, -0.01, 0.09))
    assert (to_mlm.mean, to_mlm.minus_dense, to_mlm.minus_random) == pytest.approx((0.19, -0.02, 0.07))
    assert rows["rotten-tomatoes", "rotten-tomatoes"].mean == pytest.approx(0.80)  # the diagonal: IMP itself


def test_report_markdown_states_the_definitions_and_embeds_the_plots(store, build, tmp_path):
    out = build.build_report([store], out=tmp_path / "elsewhere")
    assert out == tmp_path / "elsewhere"
    text = (out / "report.md").read_text()
    assert "**matching (paper)**" in text and "**matching (strict)**" in text and "ddof=1" in text
    assert "![curve](plots/curve.png)" in text
    assert "| paper | IMP | 40.0% | 3 | 0.8000 ± 0.0100 (0.7900–0.8100) |" in text
    assert "| mlm | dev accuracy | 3 | 0.2100 ± 0.0100 | 60.0% | 20.0% |" in text
    assert f"/runs/{config('mlm', 0).name()}`" in text  # the runs it was built from


def test_metric_override_with_a_lower_is_better_metric(store, build):
    out = build.build_report([store], out=store.parent / "by-loss", metrics={"mlm": "loss"})
    matching = pd.read_csv(out / "matching.csv").set_index("task")
    assert matching.loc["mlm", ["split", "metric"]].tolist() == ["dev", "loss"]
    assert bool(matching.loc["mlm", "lower_is_better"])
    assert matching.loc["mlm", ["dense_mean", "highest_paper", "highest_strict"]].tolist() == pytest.approx(
        [1.9, 0.4, 0.2]
    )
    assert matching.loc["rotten-tomatoes", "metric"] == "accuracy"


def test_console_tables(store):
    console = Console(record=True, width=250)
    print_tables([store], console=console)
    text = console.export_text()
    assert "Highest matching sparsity" in text and "transfer from mlm" in text and "dev accuracy*" in text
    assert "0.7900 (-0.0100 / +0.0900)" in text  # the transfer matrix: mlm ticket on rotten-tomatoes


def test_errors_are_one_clear_line(store, build, tmp_path):
    with pytest.raises(TicketlabError, match="neither a ticketlab run folder"):
        build.build_report([tmp_path])
    empty = tmp_path / "empty"
    shutil.copytree(
        store / config("mlm", 0).name(), empty / "run", ignore=shutil.ignore_patterns("round_*", "branches")
    )
    with pytest.raises(TicketlabError, match="no complete round"):
        build.build_report([empty])
    with pytest.raises(TicketlabError, match="no run is on task 'sst2'"):
        build.build_report([store], metrics={"sst2": "accuracy"})
    with pytest.raises(TicketlabError, match="no metric 'f1'"):
        build.build_report([store], metrics={"mlm": "f1"})

    twice = tmp_path / "twice"
    shutil.copytree(store / config("mlm", 2).name(), twice / "a")
    shutil.copytree(store / config("mlm", 2).name(), twice / "b")
    with pytest.raises(
        TicketlabError, match="mlm imp at sparsity 0 with seed 2 is in two places .*/a/round_00 and .*/b/round_00"
    ):
        build.build_report([twice])

    broken = tmp_path / "broken"
    shutil.copytree(store, broken, ignore=shutil.ignore_patterns("report", "by-loss"))
    (broken / config("rotten-tomatoes", 1).name() / "round_00" / "COMPLETE").unlink()
    with pytest.raises(TicketlabError, match="no dense model \\(IMP round 0\\) of rotten-tomatoes with seed 1"):
        build.build_report([broken])


def test_nearly_emptied_matrices_are_listed(store, build, tmp_path):
    shutil.copytree(store, tmp_path / "runs")
    run = RunStore(tmp_path / "runs" / config("rotten-tomatoes", 1).name())
    record = {**run.metrics(3), "nearly_empty": [{"matrix": "pooler.dense.weight", "kept": 0.0043}]}
    run.unit(3).seal(record)
    out = build.build_report([tmp_path / "runs"])
    (row,) = pd.read_csv(out / "nearly_empty.csv").to_dict("records")
    assert row == {
        "task": "rotten-tomatoes",
        "arm": "IMP",
        "seed": 1,
        "sparsity": 0.6,
        "matrix": "pooler.dense.weight",
        "kept": 0.0043,
    }
    assert "| rotten-tomatoes | IMP | 1 | 60.0% | pooler.dense.weight | 0.43% |" in (out / "report.md").read_text()
    assert not (build.build_report([store]) / "nearly_empty.csv").exists()


def test_gaps_pair_imp_with_every_other_arm_seed_by_seed(store, build):
    out = build.build_report([store])
    gaps = pd.read_csv(out / "gaps.csv")
    for (task, arm, source, level), values in ACCURACY.items():
        if arm == "imp" or level == 0:
            continue
        row = _row(gaps, task=task, arm=arm, source=source or "", level=level)
        differences = [imp - value for imp, value in zip(ACCURACY[task, "imp", None, level], values)]
        assert (row.n, row["mean"], row["std"]) == pytest.approx((3, np.mean(differences), np.std(differences, ddof=1)))
    assert "## IMP against every other arm" in (out / "report.md").read_text()
    low = build.build_report([store], metrics={"mlm": "loss"})
    mlm = pd.read_csv(low / "gaps.csv").query("task == 'mlm'")
    assert (
        set(mlm.metric) == {"loss"} and (mlm["mean"] != 0).any()
    )  # lower is better: IMP's loss subtracted from the arm's


def test_the_papers_claims_are_read_from_the_tables(store, build):
    out = build.build_report([store])
    claims = claims_table(make_tables(*load_results([store])))
    matching, random, reinit, one_shot, transfer = CLAIMS
    measured = {(row.claim, row.task): row.measured for row in claims.itertuples()}
    assert measured[matching, "rotten-tomatoes"] == "highest matching: 40.0% (paper), 20.0% (strict)"
    gaps = [0.81 - 0.78, 0.83 - 0.79, 0.79 - 0.77]  # IMP minus random pruning at 20%, seeds 0-2
    assert measured[random, "rotten-tomatoes"].startswith(f"20.0%: +{np.mean(gaps):.4f} ± {np.std(gaps, ddof=1):.4f}")
    assert measured[reinit, "rotten-tomatoes"].startswith("20.0%: +0.0600 ± 0.0100")
    assert measured[one_shot, "rotten-tomatoes"] == "40.0%: +0.0100 ± 0.0000"
    assert measured[transfer, "rotten-tomatoes"] == "40.0%: -0.0100 vs dense, +0.0900 vs random pruning"
    assert "## The BERT paper's claims" in (out / "report.md").read_text()
