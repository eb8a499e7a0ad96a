import numpy as np
import pytest
import torch

from ticketlab.errors import TicketlabError
from ticketlab.masks import nearly_empty, ones_like, sparsity
from ticketlab.pruning import magnitude_prune, round_at, scope_rankings, sparsity_schedule


def random_weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "a": torch.randn(8, 16, generator=g),
        "b": torch.randn(32, 8, generator=g) * 3,
        "c": torch.randn(5, 7, generator=g),
    }


def test_global_mask_equals_ranking_all_weights_at_once():
    weights = random_weights()
    mask = magnitude_prune(weights, ones_like(weights), 0.37)
    flat = np.concatenate([w.abs().numpy().ravel() for w in weights.values()])
    k = round(0.37 * flat.size)
    expected = np.ones(flat.size, bool)
    expected[np.argsort(flat, kind="stable")[:k]] = False
    got = np.concatenate([m.numpy().ravel() for m in mask.values()])
    assert (got == expected).all()
    assert (~got).sum() == k


def test_per_matrix_prunes_each_matrix_to_the_sparsity():
    weights = random_weights()
    mask = magnitude_prune(weights, ones_like(weights), 0.5, scope_rankings("per-matrix", list(weights), ()))
    for name, w in weights.items():
        assert int((~mask[name]).sum()) == round(0.5 * w.numel())
        kept, pruned = w[mask[name]].abs(), w[~mask[name]].abs()
        assert kept.min() >= pruned.max()


def test_the_layers_scope_ranks_the_layer_stack_together_and_each_other_matrix_alone():
    weights = {**random_weights(), "pooler": torch.randn(6, 6) * 1e-4}  # tiny: a global ranking empties it first
    rankings = scope_rankings("layers", list(weights), layers={"a", "b", "c"})
    assert rankings == [["a", "b", "c"], ["pooler"]]
    mask = magnitude_prune(weights, ones_like(weights), 0.6, rankings)
    inside = {n: weights[n] for n in "abc"}
    assert all(torch.equal(mask[n], m) for n, m in magnitude_prune(inside, ones_like(inside), 0.6).items())
    assert int((~mask["pooler"]).sum()) == round(0.6 * 36)
    assert not magnitude_prune(weights, ones_like(weights), 0.6)["pooler"].any()
    assert scope_rankings("global", list(weights), {"a"}) == [list(weights)]
    assert scope_rankings("layers", ["p"], layers=()) == [["p"]]


def test_nearly_empty_names_matrices_below_the_density():
    mask = {"a": torch.ones(10, 10, dtype=torch.bool), "b": torch.zeros(10, 10, dtype=torch.bool)}
    mask["b"][0, :3] = True
    assert nearly_empty(mask) == {}
    assert nearly_empty(mask, below=0.05) == {"b": pytest.approx(0.03)}
    mask["b"][:] = False
    assert nearly_empty(mask) == {"b": 0.0}


def test_masks_are_nested_and_exact_over_rounds():
    weights = random_weights()
    mask = ones_like(weights)
    total = sum(w.numel() for w in weights.values())
    for level in sparsity_schedule("linear", 0.1, 0.9)[1:]:
        # weights change between rounds; the pruned ones must stay pruned anyway
        weights = {n: w + 0.5 * torch.randn_like(w) for n, w in weights.items()}
        new = magnitude_prune(weights, mask, level)
        assert all(not (new[n] & ~mask[n]).any() for n in mask)
        assert sum(int((~m).sum()) for m in new.values()) == round(level * total)
        mask = new


def test_ties_are_broken_deterministically_by_position():
    weights = {"w": torch.ones(4, 5)}
    mask = magnitude_prune(weights, ones_like(weights), 0.3)
    assert mask["w"].flatten().tolist() == [False] * 6 + [True] * 14


def test_ranking_is_in_fp32_whatever_the_weight_dtype():
    weights = random_weights()
    half = {n: w.to(torch.bfloat16) for n, w in weights.items()}
    mask = magnitude_prune(half, ones_like(half), 0.5)
    as_fp32 = magnitude_prune({n: w.float() for n, w in half.items()}, ones_like(half), 0.5)
    assert all(torch.equal(mask[n], as_fp32[n]) for n in mask)
    total = sum(w.numel() for w in half.values())
    assert sparsity(mask) == round(0.5 * total) / total


def test_cannot_prune_below_the_current_sparsity():
    weights = random_weights()
    mask = magnitude_prune(weights, ones_like(weights), 0.5)
    with pytest.raises(TicketlabError):
        magnitude_prune(weights, mask, 0.3)


@pytest.mark.parametrize(
    "schedule, rate, target, expected",
    [
        ("linear", 0.1, 0.9, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
        ("linear", 0.1, 0.25, [0.0, 0.1, 0.2, 0.25]),
        ("geometric", 0.2, 0.5, [0.0, 0.2, 0.36, 0.488, 0.5]),
        ("0.5,0.7,0.8,0.9,0.95", 0.1, 0.95, [0.0, 0.5, 0.7, 0.8, 0.9, 0.95]),  # levels written out: rate unused
        ("0.3", 0.2, 0.3, [0.0, 0.3]),
    ],
)
def test_schedules(schedule, rate, target, expected):
    assert sparsity_schedule(schedule, rate, target) == pytest.approx(expected)


@pytest.mark.parametrize("target", [0.0, 1.0, -0.1, 1.5])
def test_target_outside_open_interval_is_refused(target):
    with pytest.raises(TicketlabError, match=r"\(0, 1\)"):
        sparsity_schedule("linear", 0.1, target)


@pytest.mark.parametrize("schedule", ["linear", "geometric"])
def test_a_rate_past_the_target_is_refused(schedule):
    """The first round would already prune past the target: the run is refused, not clipped to one round."""
    with pytest.raises(TicketlabError, match=f"the {schedule} schedule's first round prunes 0.7 .*target sparsity 0.3"):
        sparsity_schedule(schedule, 0.7, 0.3)
    assert sparsity_schedule(schedule, 0.3, 0.3) == [0.0, 0.3]


@pytest.mark.parametrize(
    "schedule, target, message",
    [
        ("0.5,0.9", 0.95, "ends at 0.9"),
        ("0.5,0.5", 0.5, "must rise"),
        ("0.5,1.0", 1.0 - 1e-9, "must rise, each in"),
        ("0.5,x", 0.5, "neither linear nor geometric"),
        ("cubic", 0.5, "unknown schedule"),
    ],
)
def test_bad_levels_are_refused_in_one_line(schedule, target, message):
    with pytest.raises(TicketlabError, match=message):
        sparsity_schedule(schedule, 0.1, target)


def test_a_level_written_to_three_decimals_finds_its_round():
    levels = sparsity_schedule("geometric", 0.2, 0.83)
    assert round_at(levels, 0.59) == round_at(levels, 0.5904) == 4
    assert round_at(levels, 0.738) == 6 and round_at(levels, 0.0) == 0
    assert round_at(levels, 0.595) is None and round_at(sparsity_schedule("linear", 0.1, 0.9), 1 - 0.9) == 1
