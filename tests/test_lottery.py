"""IMP end to end on a tiny random BERT and real (subsampled) Rotten Tomatoes data."""

import logging

import pytest
import torch
from conftest import tiny_bert_config
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertModel

import ticketlab
from ticketlab.masks import sparsity
from ticketlab.models import head_parameters, layer_stack_weights, load_pretrained, prunable_weights
from ticketlab.pruning import sparsity_schedule
from ticketlab.store import RunStore
from ticketlab.train.hooks import TrainHook

FAST = dict(train_examples=48, batch_size=16, epochs=1, learning_rate=1e-3, seed=3)


class RecordStart(TrainHook):
    """Copies the model's state at the start of every round."""

    def __init__(self):
        self.starts = []

    def before_train(self, model):
        self.starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})


def theta0(model_dir, seed):
    return load_pretrained(model_dir, AutoModelForSequenceClassification, seed, num_labels=2)


def test_rounds_follow_the_schedule_with_nested_masks_of_prunable_weights_only(tiny_model_dir, tmp_path):
    result = ticketlab.find(str(tiny_model_dir), sparsity=0.3, out=tmp_path, schedule="geometric", rate=0.2, **FAST)
    levels = sparsity_schedule("geometric", 0.2, 0.3)
    prunable = set(prunable_weights(theta0(tiny_model_dir, 3)))
    total = sum(w.numel() for w in prunable_weights(theta0(tiny_model_dir, 3)).values())
    assert [r["round"] for r in result.rounds] == list(range(len(levels)))
    previous = None
    for r, level in enumerate(levels):
        mask = ticketlab.load_ticket(result.path, round=r)
        assert set(mask) == prunable
        assert sum(int((~m).sum()) for m in mask.values()) == round(level * total)
        assert result.rounds[r]["sparsity"] == pytest.approx(sparsity(mask))
        if previous is not None:
            assert all(not (mask[n] & ~previous[n]).any() for n in mask)
        previous = mask
    assert 0.0 <= result.rounds[-1]["dev"]["accuracy"] <= 1.0 and "test" in result.rounds[-1]


def test_every_round_starts_from_theta0_on_the_kept_weights(tiny_model_dir, tmp_path):
    recorder = RecordStart()
    result = ticketlab.find(
        str(tiny_model_dir), sparsity=0.2, out=tmp_path, save_weights=True, hooks=[recorder], **FAST
    )
    initial = theta0(tiny_model_dir, FAST["seed"])
    prefix = initial.base_model_prefix + "."
    head = set(head_parameters(initial))
    assert len(recorder.starts) == 3
    for round, start in enumerate(recorder.starts):
        mask = ticketlab.load_ticket(result.path, round=round)
        for name, value in initial.state_dict().items():
            if name in head:
                continue
            relative = name.removeprefix(prefix)
            expected = value * mask[relative] if relative in mask else value
            assert torch.equal(start[name], expected), (round, name)
        if round > 0:  # the head keeps the values it was trained to in the previous round
            trained = load_file(str(RunStore(result.path).weights_path(round - 1)))
            assert all(torch.equal(start[name], trained[name]) for name in head)
            assert not all(torch.equal(start[name], initial.state_dict()[name]) for name in head)


def test_rewind_head_and_rewind_step(tiny_model_dir, tmp_path):
    recorder = RecordStart()
    result = ticketlab.find(
        str(tiny_model_dir), sparsity=0.1, out=tmp_path, rewind_step=2, rewind_head=True, hooks=[recorder], **FAST
    )
    initial = theta0(tiny_model_dir, FAST["seed"]).state_dict()
    theta_i = load_file(str(RunStore(result.path).rewind_path()))
    mask = ticketlab.load_ticket(result.path, round=1)
    start = recorder.starts[1]
    for name in initial:
        if name.startswith("bert."):
            relative = name.removeprefix("bert.")
            expected = theta_i[relative] * mask[relative] if relative in mask else theta_i[relative]
            assert torch.equal(start[name], expected), name
        else:
            assert torch.equal(start[name], initial[name]), name  # the head is reset to its initial values
    assert not torch.equal(
        theta_i["encoder.layer.0.attention.self.query.weight"],
        initial["bert.encoder.layer.0.attention.self.query.weight"],
    )


def test_rerunning_a_complete_run_trains_nothing(tiny_model_dir, reviews, tmp_path):
    first = ticketlab.find(str(tiny_model_dir), data=str(reviews), sparsity=0.1, out=tmp_path, **FAST)
    recorder = RecordStart()
    again = ticketlab.find(str(tiny_model_dir), data=str(reviews), sparsity=0.1, out=tmp_path, hooks=[recorder], **FAST)
    assert recorder.starts == [] and again.rounds == first.rounds and again.path == first.path


def test_per_matrix_scope(tiny_model_dir, reviews, tmp_path):
    result = ticketlab.find(
        str(tiny_model_dir), data=str(reviews), sparsity=0.1, out=tmp_path, scope="per-matrix", **FAST
    )
    mask = ticketlab.load_ticket(result.path)
    assert all(int((~m).sum()) == round(0.1 * m.numel()) for m in mask.values())


def test_a_short_run_does_not_shorten_the_next_ones_data(tiny_model_dir, tmp_path):
    from ticketlab.tasks import TASKS

    full = len(TASKS.get("rotten-tomatoes").splits(None)["train"])
    ticketlab.find(str(tiny_model_dir), sparsity=0.1, out=tmp_path, **FAST)
    assert len(TASKS.get("rotten-tomatoes").splits(None)["train"]) == full > FAST["train_examples"]


@pytest.fixture(scope="module", params=["missing", "tiny"])
def pooler_model_dir(request, tmp_path_factory, tiny_model_dir):
    """The tiny BERT with no pre-trained pooler (drawn afresh at load) or with a pooler of tiny weights."""
    path = tmp_path_factory.mktemp(f"pooler-{request.param}")
    torch.manual_seed(0)
    model = BertModel(
        tiny_bert_config(vocab_size=AutoTokenizer.from_pretrained(tiny_model_dir).vocab_size),
        add_pooling_layer=request.param == "tiny",
    )
    if request.param == "tiny":
        with torch.no_grad():
            model.pooler.dense.weight.mul_(1e-3)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return path


def test_the_default_scope_never_empties_the_pooler(pooler_model_dir, reviews, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    options = dict(data=str(reviews), sparsity=0.75, out=tmp_path, schedule="geometric", rate=0.5, **FAST)
    result = ticketlab.find(str(pooler_model_dir), **options)
    layers = layer_stack_weights(theta0(pooler_model_dir, 3))
    for r, level in enumerate((0.0, 0.5, 0.75)):
        mask = ticketlab.load_ticket(result.path, round=r)
        inside = [m for name, m in mask.items() if name in layers]
        assert sum(int((~m).sum()) for m in inside) == round(level * sum(m.numel() for m in inside))
        pooler = mask["pooler.dense.weight"]
        assert int((~pooler).sum()) == round(level * pooler.numel())  # ranked alone, at the run's sparsity
        assert "nearly_empty" not in result.rounds[r]
    assert not [r for r in caplog.records if "density" in r.getMessage()]


@pytest.mark.parametrize("pooler_model_dir", ["tiny"], indirect=True)
def test_the_paper_scope_empties_a_tiny_pooler_and_says_so(pooler_model_dir, reviews, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    options = dict(data=str(reviews), sparsity=0.5, out=tmp_path, schedule="geometric", rate=0.5, scope="global")
    result = ticketlab.find(str(pooler_model_dir), **options, **FAST)
    assert not ticketlab.load_ticket(result.path)["pooler.dense.weight"].any()
    assert result.rounds[1]["nearly_empty"] == [{"matrix": "pooler.dense.weight", "kept": 0.0}]
    (warning,) = [r.getMessage() for r in caplog.records if "density" in r.getMessage()]
    assert "round 1" in warning and "pooler.dense.weight keeps 0.00%" in warning
