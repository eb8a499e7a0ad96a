"""Pruning granularity: weight, block:RxC and N:M masks are exact, nested across rounds and deterministic; bad
strings and matrices that do not divide are refused in one line; weight-granular runs keep their names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml

import ticketlab
from ticketlab.arms import arm_label, arm_order
from ticketlab.cli.parser import build_parser
from ticketlab.config import PruneConfig, RunConfig, TrainConfig
from ticketlab.errors import TicketlabError
from ticketlab.masks import load_mask, ones_like
from ticketlab.pruning import magnitude_prune, parse_granularity, random_prune, scope_rankings, sparsity_schedule
from ticketlab.pruning.granularity import Blocks, NOfM
from ticketlab.recipe import load_recipe
from ticketlab.report.plots.curve import curve_figure
from ticketlab.report.results import collect
from ticketlab.report.tables import make_tables
from ticketlab.store import RunStore
from ticketlab.tasks import TASKS

FAST = dict(train_examples=32, batch_size=16, epochs=1, learning_rate=1e-3, seed=5)


def random_weights(seed=0):
    """Three matrices whose (shape[0], -1) views are 8x16, 16x8 and 8x16 (a conv kernel)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "a": torch.randn(8, 16, generator=g),
        "b": torch.randn(16, 8, generator=g) * 3,
        "conv": torch.randn(8, 4, 2, 2, generator=g),
    }


def as_matrix(tensor):
    return tensor.reshape(tensor.shape[0], -1)


def blocks_of(tensor, rows, columns):
    """(rows / R, columns / C, R * C): each block's entries on one line."""
    m = as_matrix(tensor)
    h, w = m.shape
    return m.reshape(h // rows, rows, w // columns, columns).transpose(1, 2).reshape(h // rows, w // columns, -1)


def block_constant(mask, rows, columns):
    """Every block of every matrix is kept or pruned whole."""
    return all((b.all(-1) | ~b.any(-1)).all() for b in (blocks_of(m, rows, columns) for m in mask.values()))


def groups_of(tensor, m):
    matrix = as_matrix(tensor)
    return matrix.reshape(matrix.shape[0], -1, m)


def pruned(mask):
    return sum(int((~m).sum()) for m in mask.values())


# --- parsing ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, parsed",
    [("block:1x4", Blocks(1, 4)), ("block:16x16", Blocks(16, 16)), ("2:4", NOfM(2, 4)), ("4:8", NOfM(4, 8))],
)
def test_granularities_parse_and_print_as_written(text, parsed):
    assert parse_granularity(text) == parsed
    assert str(parsed) == text
    assert str(parse_granularity("weight")) == "weight"


@pytest.mark.parametrize(
    "text", ["block:0x4", "3:2", "4:4", "0:4", "2:4:8", "blok:4x4", "block:4", "block:04x4", " 2:4", "Weight", ""]
)
def test_bad_granularities_are_one_line_errors(text):
    with pytest.raises(TicketlabError, match="unknown granularity") as error:
        parse_granularity(text)
    assert "\n" not in str(error.value)
    with pytest.raises(TicketlabError):
        PruneConfig(granularity=text)


# --- blocks -----------------------------------------------------------------------------------------------------------


def test_blocks_prune_exactly_the_lowest_l1_blocks():
    weights = random_weights()
    mask = magnitude_prune(weights, ones_like(weights), 0.37, granularity=Blocks(4, 4))
    norms = np.concatenate([blocks_of(w, 4, 4).abs().sum(-1).numpy().ravel() for w in weights.values()])
    expected = np.ones(norms.size, bool)
    expected[np.argsort(norms, kind="stable")[: round(0.37 * norms.size)]] = False
    assert block_constant(mask, 4, 4)
    assert (np.concatenate([blocks_of(m, 4, 4).all(-1).numpy().ravel() for m in mask.values()]) == expected).all()
    assert pruned(mask) == round(0.37 * norms.size) * 16
    assert all(m.shape == w.shape for m, w in zip(mask.values(), weights.values()))


@pytest.mark.parametrize("granularity", ["weight", "block:2x2", "block:1x4", "2:4", "4:8"])
def test_masks_are_nested_and_exact_over_rounds_at_every_granularity(granularity):
    parsed = parse_granularity(granularity)
    weights = random_weights()
    mask = ones_like(weights)
    unit = parsed.rows * parsed.columns if isinstance(parsed, Blocks) else 1
    total = sum(w.numel() for w in weights.values()) // unit  # the weights or blocks ranked
    for level in sparsity_schedule("geometric", 0.5, 0.95)[1:]:
        weights = {n: w + 0.5 * torch.randn_like(w) for n, w in weights.items()}  # pruned ones stay pruned anyway
        new = magnitude_prune(weights, mask, level, granularity=parsed)
        assert all(not (new[n] & ~mask[n]).any() for n in mask)
        assert pruned(new) == round(level * total) * unit
        if isinstance(parsed, Blocks):
            assert block_constant(new, parsed.rows, parsed.columns)
        if isinstance(parsed, NOfM):
            assert all((groups_of(m, parsed.m).sum(-1) <= parsed.n).all() for m in new.values())
        mask = new


def test_ties_are_broken_by_position_at_every_granularity():
    ones = {"w": torch.ones(4, 8)}
    blocks = magnitude_prune(ones, ones_like(ones), 0.25, granularity=Blocks(2, 2))["w"]
    expected = torch.ones(4, 8, dtype=torch.bool)
    expected[:2, :4] = False  # the first two of the eight blocks, row by row
    assert torch.equal(blocks, expected)
    n_of_m = magnitude_prune(ones, ones_like(ones), 0.5, granularity=NOfM(2, 4))["w"]
    assert n_of_m[0].tolist() == [False, False, True, True] * 2
    assert torch.equal(n_of_m, magnitude_prune(ones, ones_like(ones), 0.5, granularity=NOfM(2, 4))["w"])


# --- N:M --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [0.5, 0.61, 0.9])
def test_n_of_m_keeps_at_most_n_per_group_and_prunes_exactly(level):
    weights = random_weights(1)
    rankings = scope_rankings("per-matrix", list(weights), ())
    mask = magnitude_prune(weights, ones_like(weights), level, rankings, NOfM(2, 4))
    for name, w in weights.items():
        assert (groups_of(mask[name], 4).sum(-1) <= 2).all()
        assert int((~mask[name]).sum()) == round(level * w.numel())


def test_n_of_m_at_its_own_sparsity_keeps_the_n_largest_of_every_group():
    weights = random_weights(2)
    mask = magnitude_prune(weights, ones_like(weights), 0.5, granularity=NOfM(2, 4))
    for name, w in weights.items():
        kept, scores = groups_of(mask[name], 4), groups_of(w.abs(), 4)
        assert (kept.sum(-1) == 2).all()
        smallest_kept = scores.masked_fill(~kept, float("inf")).amin(-1)
        largest_pruned = scores.masked_fill(kept, -1.0).amax(-1)
        assert (smallest_kept >= largest_pruned).all()


def test_a_sparsity_below_what_n_of_m_prunes_is_refused():
    weights = random_weights()
    with pytest.raises(TicketlabError, match="2:4 prunes at least 0.5"):
        magnitude_prune(weights, ones_like(weights), 0.3, granularity=NOfM(2, 4))
    with pytest.raises(TicketlabError, match=r"sparsity 0.1 is below.*--schedule geometric --rate 0.5") as error:
        PruneConfig(sparsity=0.9, granularity="2:4")  # linear 0.1, 0.2, ...: the first round is below
    assert "\n" not in str(error.value)
    with pytest.raises(TicketlabError, match="sparsity 0.5 is below.*--rate 0.75"):  # the first level below is named
        PruneConfig(sparsity=0.875, granularity="1:4", schedule="geometric", rate=0.5)
    assert PruneConfig(sparsity=0.9, granularity="2:4", schedule="geometric", rate=0.5).levels()[1] == 0.5


# --- matrices that do not divide --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "granularity, shape, described",
    [(Blocks(4, 4), (6, 16), "6x16"), (Blocks(2, 8), (8, 4), "8x4"), (NOfM(2, 4), (8, 3, 3, 3), "8x27")],
)
def test_a_matrix_that_does_not_divide_is_refused_by_name(granularity, shape, described):
    weights = {**random_weights(), "encoder.odd.weight": torch.randn(shape)}
    with pytest.raises(TicketlabError, match=f"encoder.odd.weight \\({described} as a matrix") as error:
        magnitude_prune(weights, ones_like(weights), 0.5, granularity=granularity)
    assert "\n" not in str(error.value)


# --- random pruning ---------------------------------------------------------------------------------------------------


def test_random_blocks_are_whole_exact_and_nested():
    weights = random_weights()
    mask = ones_like(weights)
    generator = torch.Generator().manual_seed(0)
    for level in (0.25, 0.5, 0.75):
        new = random_prune(weights, mask, level, generator, granularity=Blocks(4, 4))
        assert block_constant(new, 4, 4)
        assert pruned(new) == round(level * 24) * 16  # 3 x 8 blocks of 16 weights
        assert all(not (new[n] & ~mask[n]).any() for n in mask)
        mask = new
    per_matrix = random_prune(weights, ones_like(weights), 0.5, generator, [[n] for n in weights], Blocks(4, 4))
    assert [int((~m).sum()) for m in per_matrix.values()] == [64, 64, 64]
    n_of_m = random_prune(weights, ones_like(weights), 0.6, generator, granularity=NOfM(2, 4))
    assert all((groups_of(m, 4).sum(-1) <= 2).all() for m in n_of_m.values())


# --- configs: weight-granular runs keep their hashes and names --------------------------------------------------------


def test_weight_granular_configs_keep_their_hashes_and_names():
    plain = RunConfig(model="m", model_hash="h", task="t", data=None)
    settings = dict(sparsity=0.5, schedule="geometric", rate=0.2, scope="per-matrix", rewind_step=5, rewind_head=True)
    tuned = RunConfig(
        model="splade-tiny",
        model_hash="abc123",
        task="rotten-tomatoes",
        data="/data/x",
        train=TrainConfig(epochs=1, seed=3),
        prune=PruneConfig(**settings),
    )
    assert plain.hash() == "f55f74a78f"  # as before granularity existed
    assert plain.name() == "t_m_linear-0.9_f55f74a78f"
    assert tuned.hash() == "102e90db4c"
    assert "granularity" not in plain.to_dict()["prune"]
    blocks = dataclasses.replace(tuned, prune=PruneConfig(**settings, granularity="block:8x8"))
    assert blocks.hash() != tuned.hash()
    assert RunConfig.from_dict(blocks.to_dict()) == blocks
    assert RunConfig.from_dict(tuned.to_dict()).prune.granularity == "weight"  # an old config.json reads as before


def test_a_recipe_reads_n_of_m_as_text_not_a_base_60_number(tmp_path):
    path = tmp_path / "blocks.yaml"
    path.write_text("model: splade-tiny\ntasks: {rotten-tomatoes: {}}\nprune: {granularity: 2:4, rate: 0.5}\n")
    assert load_recipe(path).prune == {"granularity": "2:4", "rate": 0.5}
    path.write_text(
        yaml.safe_dump({"model": "splade-tiny", "tasks": {"rotten-tomatoes": {}}, "prune": {"granularity": "blocks"}})
    )
    with pytest.raises(TicketlabError, match="recipe blocks: prune: unknown granularity 'blocks'"):
        load_recipe(path)


# --- end to end: a block run, its controls, and the report beside a weight run ----------------------------------------


def test_a_block_run_and_its_controls_are_block_masks_reported_as_their_own_arms(tiny_model_dir, reviews, tmp_path):
    options = dict(sparsity=0.5, schedule="geometric", rate=0.5, out=tmp_path, controls=("random", "one-shot"), **FAST)
    options["data"] = str(reviews)
    blocks = ticketlab.find(str(tiny_model_dir), granularity="block:4x4", **options)
    store = RunStore(blocks.path)
    assert store.config().prune.granularity == "block:4x4"
    for rounds in (store, store.branch("random"), store.branch("one-shot")):
        mask = load_mask(rounds.mask_path(1))[0]
        assert block_constant(mask, 4, 4)
        assert pruned(mask) == sum(m.numel() for m in mask.values()) // 2  # every matrix divides into 4x4 blocks
        assert rounds.metrics(1)["granularity"] == "block:4x4"
    n_of_m = ticketlab.find(str(tiny_model_dir), granularity="2:4", **{**options, "controls": ()})
    mask = load_mask(RunStore(n_of_m.path).mask_path(1))[0]
    assert all((groups_of(m, 4).sum(-1) <= 2).all() for m in mask.values())
    assert len({blocks.path, n_of_m.path}) == 2
    with pytest.raises(TicketlabError, match=r"block:5x5: encoder.layer.0.attention.self.query.weight \(32x32"):
        ticketlab.find(str(tiny_model_dir), granularity="block:5x5", **{**options, "out": tmp_path / "odd"})
    assert not (tmp_path / "odd").exists()  # refused before anything is written

    alone = {(r.arm, r.level) for r in collect([blocks.path])}  # one granularity: read as ever
    assert alone == {("imp", 0.0), ("imp", 0.5), ("random", 0.5), ("one-shot", 0.5)}
    weight = ticketlab.find(str(tiny_model_dir), **options)
    assert "granularity" not in weight.rounds[1]
    results = collect([tmp_path])
    arms = sorted((r.arm, r.level) for r in results)
    assert arms == sorted(
        [("imp", 0.0), ("imp", 0.5), ("random", 0.5), ("one-shot", 0.5)]
        + [("imp · block:4x4", 0.5), ("random · block:4x4", 0.5), ("one-shot · block:4x4", 0.5), ("imp · 2:4", 0.5)]
    )
    assert arm_label("imp · block:4x4") == "IMP · block:4x4" and arm_label("random · 2:4") == "random pruning · 2:4"
    assert arm_order("imp") < arm_order("imp · block:4x4") < arm_order("one-shot")
    decider = TASKS.get("rotten-tomatoes").decider()
    tables = make_tables(results, {"rotten-tomatoes": decider})
    assert set(tables.long.arm) == {arm for arm, _ in arms}
    labels = curve_figure(results, "rotten-tomatoes", decider).axes[0].get_legend_handles_labels()[1]
    assert {"IMP", "IMP · block:4x4", "IMP · 2:4", "random pruning · block:4x4"} <= set(labels)


@pytest.mark.parametrize(
    "verb", [["find"], ["transfer", "--ticket", "run", "--task", "sst2"], ["grid", "--tasks", "a,b"]]
)
def test_every_verb_that_prunes_takes_a_granularity(verb):
    assert build_parser().parse_args([*verb, "--granularity", "block:4x4"]).granularity == "block:4x4"
    assert build_parser().parse_args(verb).granularity is None  # the task's default, then PruneConfig's
