"""Wanda pruning: calibration input norms by hand, |w| x norm scores, and row-wise masks that are exact, nested and
honour the current mask at every granularity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.masks import ones_like
from ticketlab.pruning import magnitude_prune
from ticketlab.pruning.granularity import Blocks, NOfM
from ticketlab.pruning.wanda import input_norms, row_prune, wanda_scores


def random_scores(seed=0):
    """Non-negative scores of three matrices whose rows are 16, 8 and 16 (a conv kernel) long."""
    g = torch.Generator().manual_seed(seed)
    return {
        "a": torch.rand(8, 16, generator=g),
        "b": torch.rand(16, 8, generator=g),
        "conv": torch.rand(8, 4, 2, 2, generator=g),
    }


def rows_of(tensor):
    return tensor.reshape(tensor.shape[0], -1)


def pruned_per_row(mask):
    return (~rows_of(mask)).sum(1)


def lowest_pruned(scores, mask):
    """Every row's pruned scores are at most its kept ones."""
    scores, kept = rows_of(scores), rows_of(mask)
    return (scores.masked_fill(kept, -1.0).amax(1) <= scores.masked_fill(~kept, float("inf")).amin(1)).all()


def block_rows(tensor, rows, columns):
    """(rows / R, columns / C, R * C): each block's entries on one line, one block row per first index."""
    m = rows_of(tensor)
    h, w = m.shape
    return m.reshape(h // rows, rows, w // columns, columns).transpose(1, 2).reshape(h // rows, w // columns, -1)


# --- input norms ------------------------------------------------------------------------------------------------------


def mlp():
    """Linear(3, 2) -> ReLU -> Linear(2, 2), no biases, weights chosen so the hidden features are easy by hand."""
    model = nn.Sequential(nn.Linear(3, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]]))
        model[2].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    return model


MLP_BATCHES = [
    {"input": torch.tensor([[1.0, 2.0, 3.0]])},
    {"input": torch.tensor([[[2.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]]])},  # (2, 1, 3): every leading position counts
]


def test_linear_input_norms_are_the_l2_norms_of_each_feature_over_every_batch():
    model = mlp()
    model.train()
    model[2].eval()  # a submodule's own mode is restored too
    norms = input_norms(model, {"first": model[0].weight, "second": model[2].weight}, MLP_BATCHES)
    # inputs (1, 2, 3), (2, 0, 1), (0, 1, 0): features' squares 1+4+0, 4+0+1, 9+1+0
    assert torch.allclose(norms["first"], torch.tensor([5.0, 5.0, 10.0]).sqrt())
    # hidden ReLU(x0, x1 - x2): (1, 0), (2, 0), (0, 1)
    assert torch.allclose(norms["second"], torch.tensor([5.0, 1.0]).sqrt())
    assert norms["first"].dtype == torch.float32 and list(norms) == ["first", "second"]
    assert model.training and model[0].training and not model[2].training
    assert not model[0]._forward_pre_hooks and not model[2]._forward_pre_hooks
    # the same inputs as token sequences in padded batches: padding (whatever it holds) counts nowhere
    padded = [
        {"input": torch.tensor([[[1.0, 2.0, 3.0], [9.0, 9.0, 9.0]]]), "attention_mask": torch.tensor([[1, 0]])},
        {"input": torch.tensor([[[2.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]]]), "attention_mask": torch.tensor([[1], [1]])},
    ]
    weights = {"first": model[0].weight, "second": model[2].weight}
    sequences = input_norms(model, weights, padded, lambda m, batch, generator: m(batch["input"]))
    assert all(torch.allclose(sequences[name], norms[name]) for name in weights)


def test_conv_input_norms_are_per_channel_over_batch_and_space():
    model = nn.Sequential(nn.Conv2d(2, 1, kernel_size=1))
    images = torch.tensor([[[[1.0, 2.0]], [[0.0, 3.0]]], [[[2.0, 0.0]], [[4.0, 0.0]]]])  # (N=2, C=2, H=1, W=2)
    norms = input_norms(model, {"conv": model[0].weight}, [{"input": images}])
    assert torch.allclose(norms["conv"], torch.tensor([3.0, 5.0]))  # sqrt(1+4+4+0), sqrt(0+9+16+0)


def test_a_weight_whose_module_never_runs_or_is_not_in_the_model_is_refused_by_name():
    model = mlp()
    only_first = lambda m, batch, generator: m[0](batch["input"])  # noqa: E731
    weights = {"first": model[0].weight, "second": model[2].weight}
    with pytest.raises(TicketlabError, match="wanda: second saw no calibration input") as error:
        input_norms(model, weights, MLP_BATCHES, only_first)
    assert "\n" not in str(error.value)
    assert not model[0]._forward_pre_hooks
    with pytest.raises(TicketlabError, match="wanda: stranger is not the weight of an nn.Linear or nn.Conv2d"):
        input_norms(model, {"stranger": nn.Linear(3, 2).weight}, MLP_BATCHES)


# --- scores -----------------------------------------------------------------------------------------------------------


def test_scores_are_abs_weight_times_the_norm_of_its_input_feature():
    weights = {"w": torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]), "conv": torch.tensor([[[[-1.0]], [[2.0]]]])}
    norms = {"w": torch.tensor([2.0, 1.0, 0.5]), "conv": torch.tensor([3.0, 5.0])}
    scores = wanda_scores(weights, norms)
    assert torch.equal(scores["w"], torch.tensor([[2.0, 2.0, 1.5], [8.0, 5.0, 3.0]]))
    assert torch.equal(scores["conv"], torch.tensor([[[[3.0]], [[10.0]]]]))
    with pytest.raises(TicketlabError, match="wanda: w reads 3 input features but has 2 norms"):
        wanda_scores(weights, {**norms, "w": torch.ones(2)})


# --- row pruning ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_every_row_prunes_exactly_its_share_of_lowest_scores(sparsity):
    scores = random_scores()
    mask = row_prune(scores, ones_like(scores), sparsity)
    for name, score in scores.items():
        width = rows_of(score).shape[1]
        assert (pruned_per_row(mask[name]) == round(sparsity * width)).all()
        assert lowest_pruned(score, mask[name])
        assert mask[name].shape == score.shape


def test_rows_prune_by_weight_times_norm_not_by_magnitude_nor_globally():
    weights = {"w": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])}
    scores = wanda_scores(weights, {"w": torch.tensor([10.0, 1.0, 1.0])})  # [[10, 2, 3], [40, 5, 6]]
    mask = row_prune(scores, ones_like(scores), 1 / 3)["w"]
    assert mask.tolist() == [[True, False, True], [True, False, True]]
    # |w| alone, ranked globally, prunes 1 and 2 (both of row 0): the column Wanda keeps and a second weight of row 0
    assert magnitude_prune(weights, ones_like(weights), 1 / 3)["w"].tolist() == [[False, False, True], [True] * 3]


def test_ties_are_broken_by_position_in_every_row():
    scores = {"w": torch.ones(2, 4)}
    assert row_prune(scores, ones_like(scores), 0.5)["w"].tolist() == [[False, False, True, True]] * 2


def test_masks_are_nested_over_rising_sparsity():
    scores = random_scores(1)
    mask = ones_like(scores)
    for level in (0.2, 0.4, 0.6, 0.8):
        scores = {n: s + 0.5 * torch.rand_like(s) for n, s in scores.items()}  # new calibration, new scores
        new = row_prune(scores, mask, level)
        for name in mask:
            assert not (new[name] & ~mask[name]).any()
            assert (pruned_per_row(new[name]) == round(level * rows_of(new[name]).shape[1])).all()
        mask = new


def test_an_existing_mask_is_honoured_and_one_that_prunes_too_much_is_refused():
    scores = {"w": torch.tensor([[1.0, 2.0, 3.0, 4.0]])}
    mask = {"w": torch.tensor([[True, True, True, False]])}  # the highest score is pruned already
    assert row_prune(scores, mask, 0.5)["w"].tolist() == [[False, True, True, False]]
    too_many = {"w": torch.tensor([[False, True, False, False]])}
    with pytest.raises(TicketlabError, match="cannot prune w to sparsity 0.5 per row: a row has 3 of its 4") as error:
        row_prune(scores, too_many, 0.5)
    assert "\n" not in str(error.value)


# --- granularity ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.75])
def test_blocks_prune_exactly_their_share_of_each_block_row_lowest_sums_first(sparsity):
    scores = random_scores(2)
    mask = row_prune(scores, ones_like(scores), sparsity, Blocks(2, 4))
    for name, score in scores.items():
        kept = block_rows(mask[name], 2, 4)
        assert (kept.all(-1) | ~kept.any(-1)).all()  # whole blocks
        kept_blocks = kept.all(-1)
        assert ((~kept_blocks).sum(1) == round(sparsity * kept_blocks.shape[1])).all()
        assert lowest_pruned(block_rows(score, 2, 4).sum(-1), kept_blocks)


def test_n_of_m_keeps_at_most_n_per_group_prunes_each_row_exactly_and_nests():
    scores = random_scores(3)
    mask = ones_like(scores)
    for level in (0.5, 0.6, 0.8):
        new = row_prune(scores, mask, level, NOfM(2, 4))
        for name, score in scores.items():
            rows = rows_of(new[name])
            assert (rows.reshape(rows.shape[0], -1, 4).sum(-1) <= 2).all()
            assert (pruned_per_row(new[name]) == round(level * rows.shape[1])).all()
            assert not (new[name] & ~mask[name]).any()
        mask = new
    at_half = row_prune(scores, ones_like(scores), 0.5, NOfM(2, 4))["a"].reshape(8, 4, 4)
    groups = scores["a"].reshape(8, 4, 4)
    assert (groups.masked_fill(at_half, -1.0).amax(-1) <= groups.masked_fill(~at_half, 2.0).amin(-1)).all()
    with pytest.raises(TicketlabError, match="2:4 prunes at least 0.5"):
        row_prune(scores, ones_like(scores), 0.3, NOfM(2, 4))
