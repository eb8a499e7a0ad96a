"""The cost ledger in the report, from a synthetic run store whose units carry known ledgers
(store_fixture.write_costs): the cost to find each ticket and to train it, a transferred ticket's share, the plot, and
runs stored before the ledger."""

from __future__ import annotations

import importlib
import shutil

import numpy as np
import pandas as pd
import pytest
from store_fixture import SEARCH_SHARE, SEEDS, UNIT_FLOPS, config, write_costs, write_earlybert, write_store

from ticketlab.report.cost import cost_table, unit_costs
from ticketlab.report.plots.cost import cost_figure
from ticketlab.report.results import collect
from ticketlab.store import RunStore

RT, MLM = UNIT_FLOPS["rotten-tomatoes"], UNIT_FLOPS["mlm"]
PER_SEED = np.mean([seed + 1 for seed in SEEDS])  # a unit of seed s spends (s + 1) x its task's unit: 2 on average
# (arm, level) on rotten-tomatoes -> the IMP rounds its mask depended on
ROUNDS_BEFORE = {
    ("imp", 0.0): 0,
    ("imp", 0.2): 1,
    ("imp", 0.4): 2,
    ("imp", 0.6): 3,
    ("one-shot", 0.4): 1,  # the dense round
    ("random", 0.6): 0,
    ("reinit", 0.2): 1,  # IMP's mask of the same round
    ("shuffle", 0.4): 2,
    ("inverted", 0.4): 3,  # IMP's mask at 60%: round 3
}


@pytest.fixture(scope="module")
def costed(tmp_path_factory):
    return write_costs(write_earlybert(write_store(tmp_path_factory.mktemp("costed") / "runs")))


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    return write_earlybert(write_store(tmp_path_factory.mktemp("old") / "runs"))


@pytest.fixture
def build(monkeypatch):
    """ticketlab.report.build without plots."""
    module = importlib.import_module("ticketlab.report.build")
    monkeypatch.setattr(module, "draw_all", lambda results, deciders, out: [])
    return module


def _row(frame: pd.DataFrame, **where) -> pd.Series:
    """The one row where each column equals its value (a CSV's empty source reads back as NaN: "")."""
    match = frame[np.logical_and.reduce([frame[k].astype(object).fillna("") == v for k, v in where.items()])]
    assert len(match) == 1, where
    return match.iloc[0]


def test_the_cost_to_find_each_ticket_is_what_its_mask_depended_on(costed, build):
    out = build.build_report([costed])
    cost = pd.read_csv(out / "cost.csv")
    for (arm, level), rounds in ROUNDS_BEFORE.items():
        row = _row(cost, task="rotten-tomatoes", arm=arm, source="", level=level)
        find, train = rounds * PER_SEED * RT, PER_SEED * RT
        assert row.n == 3
        assert (row.find_flops, row.train_flops, row.total_flops) == pytest.approx((find, train, find + train))
        assert (row.find_s, row.train_s, row.total_s) == pytest.approx((find / 1e8, train / 1e8, (find + train) / 1e8))
    noise = _row(cost, task="mlm", arm="noise", level=0.6)
    assert noise.find_flops == pytest.approx(3 * PER_SEED * MLM)
    # a transferred ticket: its source's IMP rounds 0 and 1 (the ticket at 40%), shared by its one target task
    to_rt = _row(cost, task="rotten-tomatoes", arm="transfer", source="mlm", level=0.4)
    assert (to_rt.find_flops, to_rt.train_flops) == pytest.approx((2 * PER_SEED * MLM, PER_SEED * RT))
    to_mlm = _row(cost, task="mlm", arm="transfer", source="rotten-tomatoes", level=0.4)
    assert (to_mlm.find_flops, to_mlm.train_flops) == pytest.approx((2 * PER_SEED * RT, PER_SEED * MLM))
    # EarlyBERT: its search (settings a: seeds 0-2; b: seeds 0 and 1); the random structured ticket: nothing
    structured = cost[(cost.task == "rotten-tomatoes") & cost.arm.str.startswith("earlybert")]
    assert structured.level.isna().all() and (structured.sparsity > 0).all()
    for arm, seeds in (("earlybert", [0, 1, 2]), ("earlybert", [0, 1]), ("earlybert-random", [0, 1, 2])):
        row = _row(structured, arm=arm, n=len(seeds))
        share = SEARCH_SHARE if arm == "earlybert" else 0.0
        units = np.mean([seed + 1 for seed in seeds]) * RT
        assert (row.find_flops, row.train_flops) == pytest.approx((share * units, units))
    # the rewinding run was stored before the ledger: its costs are unknown, and the report says so
    rewind = _row(cost, arm="imp-rewind-10", level=0.4)
    assert rewind.n == 1 and np.isnan(rewind.find_flops) and np.isnan(rewind.train_s) and np.isnan(rewind.total_s)
    text = (out / "report.md").read_text()
    assert "## Cost" in text and "[cost.csv](cost.csv)" in text
    assert "| IMP | 40.0% | 3 | 4e+09 | 2e+09 | 6e+09 | 40.0 | 20.0 | 60.0 |" in text
    assert "| IMP, rewind to step 10 | 40.0% | 1 | — | — | — | — | — | — |" in text


def test_a_ticket_transferred_to_two_tasks_bears_half_its_finding_cost_in_each(costed, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(costed, root, ignore=shutil.ignore_patterns("report"))
    for seed in SEEDS:  # the mlm ticket of each seed also trained on sst2
        target = RunStore(root / config("sst2", seed).name())
        target.initialize(config("sst2", seed))
        (branch,) = (root / config("rotten-tomatoes", seed).name() / "branches").glob("transfer_mlm_*")
        shutil.copytree(branch, target.path / "branches" / branch.name)
    cost = cost_table(collect([root]))
    for task in ("rotten-tomatoes", "sst2"):
        row = _row(cost, task=task, arm="transfer", source="mlm", level=0.4)
        assert row.find_flops == pytest.approx(2 * PER_SEED * MLM / 2)
    to_mlm = _row(cost, task="mlm", arm="transfer", source="rotten-tomatoes", level=0.4)
    assert to_mlm.find_flops == pytest.approx(2 * PER_SEED * RT)  # the other ticket still serves one task
    alone = cost_table(collect([root / config("rotten-tomatoes", 0).name()]))  # its source run not among these
    assert np.isnan(_row(alone, arm="transfer", level=0.4).find_flops)


def test_runs_stored_before_the_ledger_still_report(old, build):
    out = build.build_report([old])
    cost = pd.read_csv(out / "cost.csv")
    assert cost.train_flops.isna().all() and cost.train_s.isna().all() and cost.total_flops.isna().all()
    assert _row(cost, task="rotten-tomatoes", arm="random", level=0.2).find_flops == 0  # a random mask takes nothing
    assert np.isnan(_row(cost, task="rotten-tomatoes", arm="imp", level=0.2).find_flops)
    assert "## Cost" not in (out / "report.md").read_text()


def test_the_cost_plot_has_every_arm_at_every_sparsity(costed, old):
    results = collect([costed])
    figure = cost_figure(results, unit_costs(results), "rotten-tomatoes", ("dev", "accuracy"))
    (ax,) = figure.axes
    assert ax.get_xscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    imp = lines["IMP"]
    assert list(imp.get_xdata()) == pytest.approx([(r + 1) * PER_SEED * RT for r in range(4)])  # dense first
    assert list(imp.get_ydata()) == pytest.approx([0.80, 0.81, 0.80, 0.70])
    assert "transfer from mlm" in lines and "random pruning" in lines
    assert sum(label.startswith("EarlyBERT ") for label in lines) == 2  # one point per settings
    assert "IMP, rewind to step 10" not in lines  # no ledger: nothing to place
    old_results = collect([old])
    assert cost_figure(old_results, unit_costs(old_results), "rotten-tomatoes", ("dev", "accuracy")) is None
