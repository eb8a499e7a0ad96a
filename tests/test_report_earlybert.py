"""The EarlyBERT part of the report, from a synthetic run store with EarlyBERT branches
(store_fixture.write_earlybert)."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from store_fixture import write_earlybert, write_store

from ticketlab.report.build import load_results
from ticketlab.report.earlybert import (
    earlybert_groups,
    earlybert_table,
    ffn_kept_by_layer,
    heads_kept_grid,
    split_settings,
)
from ticketlab.report.plots.draw import draw_all
from ticketlab.report.tables import make_tables

PRUNABLE = {"rotten-tomatoes": 17408, "mlm": 16384}  # weights the fixture's masks cover (mlm: no pooler)
A = "draw_every 5 · ffn 0.375 · heads 0.5 · l1 0.0001 · threshold 0.1 · window 2"
B = "draw_every 5 · ffn 0.5 · heads 0 · l1 0.0001 · threshold 0.1 · window 2"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("plain") / "runs")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_earlybert(write_store(tmp_path_factory.mktemp("earlybert") / "runs"))


@pytest.fixture(scope="module")
def table(store) -> pd.DataFrame:
    return earlybert_table(*load_results([store]))


def _row(
    table: pd.DataFrame, task: str, settings: str, arm: str, split: str = "dev", metric: str = "accuracy"
) -> pd.Series:
    match = table[
        (table.task == task)
        & (table.settings == settings)
        & (table.arm == arm)
        & (table.split == split)
        & (table.metric == metric)
    ]
    assert len(match) == 1
    return match.iloc[0]


def test_rows_per_task_settings_and_arm_with_every_metric(table):
    rows = table[["task", "settings", "arm"]].drop_duplicates().itertuples(index=False)
    assert [tuple(r) for r in rows] == [
        ("mlm", A, "dense"),
        ("mlm", A, "earlybert"),
        ("mlm", A, "earlybert-random"),
        ("rotten-tomatoes", A, "dense"),
        ("rotten-tomatoes", A, "earlybert"),
        ("rotten-tomatoes", A, "earlybert-random"),
        ("rotten-tomatoes", B, "dense"),
        ("rotten-tomatoes", B, "earlybert"),
        ("rotten-tomatoes", B, "earlybert-random"),
    ]
    mlm = table[(table.task == "mlm") & (table.arm == "earlybert")]
    assert mlm[["split", "metric", "decides"]].values.tolist() == [
        ["dev", "accuracy", True],
        ["dev", "loss", False],
        ["dev", "perplexity", False],
    ]
    assert set(table.model) == {"splade-tiny"}


def test_metrics_over_seeds_and_the_difference_to_the_same_seeds_dense_model(table):
    def stats(row):
        return row.n, row["mean"], row["std"], row["min"], row["max"], row.minus_dense

    # dense 0.80/0.82/0.78; EarlyBERT 0.79/0.80/0.78 (-0.01, -0.02, 0); random 0.70/0.72/0.71 (-0.10, -0.10, -0.07)
    assert stats(_row(table, "rotten-tomatoes", A, "dense")) == pytest.approx((3, 0.80, 0.02, 0.78, 0.82, 0.0))
    assert stats(_row(table, "rotten-tomatoes", A, "earlybert")) == pytest.approx((3, 0.79, 0.01, 0.78, 0.80, -0.01))
    assert stats(_row(table, "rotten-tomatoes", A, "earlybert-random")) == pytest.approx(
        (3, 0.71, 0.01, 0.70, 0.72, -0.09)
    )
    assert _row(table, "rotten-tomatoes", A, "earlybert", split="test")["mean"] == pytest.approx(0.78)
    # settings "b": seeds 0 and 1 only, so the dense row too; EarlyBERT 0.81/0.80 against 0.80/0.82
    assert stats(_row(table, "rotten-tomatoes", B, "dense")) == pytest.approx(
        (2, 0.81, np.sqrt(2) / 100, 0.80, 0.82, 0.0)
    )
    assert stats(_row(table, "rotten-tomatoes", B, "earlybert")) == pytest.approx(
        (2, 0.805, np.sqrt(2) / 200, 0.80, 0.81, -0.005)
    )
    # mlm loss (3 - 5 accuracy): 2.05/1.95 against IMP's dense 2.0/1.9
    assert _row(table, "mlm", A, "earlybert", metric="loss").minus_dense == pytest.approx(0.05)


def test_what_the_tickets_keep(table):
    def kept(row):
        return row.heads_kept, row.heads_total, row.heads_per_layer, row.ffn_kept, row.params_kept, row.sparsity

    # "a": one head of two in each layer, 80 of 128 neurons; a head owns 2096 parameters, a neuron 65, of 100000
    a = (
        2,
        4,
        1,
        80 / 128,
        (100_000 - 2 * 2096 - 48 * 65) / 100_000,
        (2 * 2048 + 48 * 64) / PRUNABLE["rotten-tomatoes"],
    )
    assert kept(_row(table, "rotten-tomatoes", A, "earlybert")) == pytest.approx(a)
    assert kept(_row(table, "rotten-tomatoes", A, "earlybert-random")) == pytest.approx(a)  # the same counts per layer
    assert kept(_row(table, "rotten-tomatoes", A, "dense")) == pytest.approx((4, 4, 2, 1.0, 1.0, 0.0))
    b = (4, 4, 2, 0.5, (100_000 - 64 * 65) / 100_000, 64 * 64 / PRUNABLE["rotten-tomatoes"])
    assert kept(_row(table, "rotten-tomatoes", B, "earlybert")) == pytest.approx(b)
    assert _row(table, "mlm", A, "earlybert").sparsity == pytest.approx((2 * 2048 + 48 * 64) / PRUNABLE["mlm"])


def test_draw_steps_and_time_ratios(table):
    def search(row):
        return row.draw_step, row.early_bird, row.search_time_s, row.train_time_s, row.time_ratio

    # dense training: round 0's 20 s and 22 s (seed 0's records store 25 s: round 0 wins), seed 2's records' 18 s
    assert search(_row(table, "rotten-tomatoes", A, "earlybert")) == pytest.approx(
        (25, 2, 3.0, 11.0, np.mean([(2 + 10) / 20, (3 + 11) / 22, (4 + 12) / 18]))
    )  # drawn at 25, 20, 30 (no early bird)
    random = _row(table, "rotten-tomatoes", A, "earlybert-random")
    assert search(random)[2:] == pytest.approx((np.nan, 28 / 3, np.mean([9 / 20, 10 / 22, 9 / 18])), nan_ok=True)
    assert pd.isna(random.draw_step) and pd.isna(random.early_bird)
    assert search(_row(table, "rotten-tomatoes", A, "dense"))[2:] == pytest.approx((np.nan, 20.0, 1.0), nan_ok=True)
    assert search(_row(table, "rotten-tomatoes", B, "earlybert")) == pytest.approx(
        (15, 2, 1.0, 8.5, np.mean([9 / 20, 10 / 22]))
    )
    # mlm's round 0 has no train_time_s (an old store): the 30 s its records store
    assert search(_row(table, "mlm", A, "earlybert")) == pytest.approx((15, 2, 5.0, 21.0, np.mean([25 / 30, 27 / 30])))
    assert _row(table, "mlm", A, "dense").train_time_s == 30.0


def test_structured_arms_stay_out_of_the_unstructured_tables(plain, store):
    results, deciders = load_results([store])
    earlybert = [r for r in results if r.arm.startswith("earlybert")]
    assert len(earlybert) == 2 * 7 and {tuple(r.metrics) for r in earlybert} == {
        ("dev", "test"),
        ("dev",),
    }  # no structure/search
    with_earlybert, without = make_tables(results, deciders), make_tables(*load_results([plain]))
    for name in ("long", "matching", "table2", "transfer"):
        pd.testing.assert_frame_equal(getattr(with_earlybert, name), getattr(without, name))


def test_report_without_earlybert_has_no_earlybert_part(plain, store, monkeypatch, tmp_path):
    build = importlib.import_module("ticketlab.report.build")
    monkeypatch.setattr(build, "draw_all", lambda results, deciders, out: [])
    before = build.build_report([plain], out=tmp_path / "plain")
    assert not (before / "earlybert.csv").exists() and "EarlyBERT" not in (before / "report.md").read_text()
    after = build.build_report([store], out=tmp_path / "earlybert")
    text = (after / "report.md").read_text()
    assert "## EarlyBERT" in text and "[earlybert.csv](earlybert.csv)" in text
    assert "| ffn 0.375 · heads 0.5 | EarlyBERT | 3 | 0.7900 ± 0.0100 (0.7800–0.8000) |" in text
    assert "| 1/2 per layer | 62.5% | 92.7% | 41.2% | 25 (early bird 2/3) | 3.0 + 11.0 s | 0.71× |" in text
    assert (
        "| subnetwork | seeds | dev accuracy* | dev loss | dev perplexity | Δ dense* |" in text
    )  # mlm: one settings, no column
    for name in ("results.csv", "matching.csv", "table2.csv", "transfer.csv"):
        assert (after / name).read_text() == (before / name).read_text()
    assert len(pd.read_csv(after / "earlybert.csv")) == 3 * 3 + 6 * 2  # mlm: 3 arms x 3 metrics; rotten-tomatoes: 6 x 2


def test_console_prints_the_earlybert_tables(store):
    console = Console(record=True, width=300)
    importlib.import_module("ticketlab.report.console").print_tables([store], console=console)
    text = console.export_text()
    assert "rotten-tomatoes: EarlyBERT" in text and "random structured ticket" in text and "15 (early bird 2/2)" in text


def test_heads_map_is_the_share_of_seeds_keeping_each_head(store):
    groups = {(g.task, g.settings): g for g in earlybert_groups(load_results([store])[0])}
    a = groups["rotten-tomatoes", A].arms
    grid = heads_kept_grid(a["earlybert"])  # layer 0 keeps head 0, 0, 1 over seeds 0-2; layer 1 head 1 always
    assert grid.rows == grid.columns == ("0", "1")
    assert grid.values == pytest.approx(np.array([[2 / 3, 1 / 3], [0.0, 1.0]]))
    assert heads_kept_grid(a["earlybert-random"]).values == pytest.approx(np.array([[1 / 3, 2 / 3], [2 / 3, 1 / 3]]))
    assert heads_kept_grid(groups["rotten-tomatoes", B].arms["earlybert"]).values.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert ffn_kept_by_layer(a["earlybert"]) == pytest.approx([(48 + 44 + 40) / 192, (32 + 36 + 40) / 192])
    assert ffn_kept_by_layer(a["earlybert-random"]) == pytest.approx(ffn_kept_by_layer(a["earlybert"]))


def test_settings_split_into_shared_and_own():
    assert split_settings([A, B]) == (
        "draw_every 5 · l1 0.0001 · threshold 0.1 · window 2",
        {A: "ffn 0.375 · heads 0.5", B: "ffn 0.5 · heads 0"},
    )
    assert split_settings([A]) == (A, {A: ""})


def test_earlybert_figures_only_with_earlybert_results(plain, store, tmp_path):
    names = {path.name for path in draw_all(*load_results([store]), tmp_path / "earlybert")}
    unstructured = {
        "curve_mlm.png",
        "curve_rotten-tomatoes.png",
        "transfer_40.png",
        "overlap_60.png",
        "layers_mlm.png",
        "layers_rotten-tomatoes.png",
        "heads_mlm.png",
        "heads_rotten-tomatoes.png",
    }
    earlybert = {
        f"earlybert_{kind}_{task}.png" for kind in ("distance", "heads") for task in ("mlm", "rotten-tomatoes")
    }
    assert names == unstructured | earlybert
    for name in earlybert:
        path = tmp_path / "earlybert" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert {path.name for path in draw_all(*load_results([plain]), tmp_path / "plain")} == unstructured
