"""The training loop keeps pruned weights at exactly zero, and a resumed run ends where an uninterrupted one does."""

import re

import pytest
import torch
from conftest import tiny_bert_config
from helpers import StopAfter
from transformers import AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding

from ticketlab.assets import asset_path
from ticketlab.config import TrainConfig
from ticketlab.errors import TicketlabError
from ticketlab.masks import ones_like
from ticketlab.models import prunable_weights
from ticketlab.pruning import magnitude_prune
from ticketlab.train.checkpoint import CHECKPOINT_KEYS, usable_checkpoint
from ticketlab.train.flops import forward_flops
from ticketlab.train.hooks import MaskEnforcer
from ticketlab.train.loop import train


def test_masked_weights_stay_exactly_zero_under_adamw_with_weight_decay():
    tokenizer = AutoTokenizer.from_pretrained(asset_path("splade-tiny"))
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(vocab_size=tokenizer.vocab_size))
    weights = prunable_weights(model)
    mask = magnitude_prune(weights, ones_like(weights), 0.7)
    with torch.no_grad():
        for name, w in weights.items():
            w.mul_(mask[name])
    texts = [f"sample number {i} is {'good' if i % 2 else 'bad'}" for i in range(40)]
    features = [{**tokenizer(t), "labels": i % 2} for i, t in enumerate(texts)]
    config = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, weight_decay=0.1, warmup_ratio=0.2)
    before = {n: w.detach().clone() for n, w in weights.items()}
    train(
        model,
        features,
        DataCollatorWithPadding(tokenizer),
        config,
        hooks=[MaskEnforcer(list(weights.values()), list(mask.values()))],
    )
    for name, w in weights.items():
        assert (w[~mask[name]] == 0).all()
        assert not torch.equal(w[mask[name]], before[name][mask[name]])  # the kept weights did train


def test_the_ledger_counts_a_tiny_berts_matrix_products_on_the_first_batch_and_three_passes_a_step():
    tokenizer = AutoTokenizer.from_pretrained(asset_path("splade-tiny"))
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(vocab_size=tokenizer.vocab_size))
    # the first batch is short; a shuffled batch of 8 from the rest would be longer
    texts = [f"short {i}" for i in range(8)] + [f"a much longer sample, number {i} of this set" for i in range(32)]
    features = [{**tokenizer(t), "labels": i % 2} for i, t in enumerate(texts)]
    collate = DataCollatorWithPadding(tokenizer)
    probe = collate(features[:8])
    B, T = probe["input_ids"].shape
    H, FFN, L, C = 32, 64, 2, 2  # hidden, intermediate, layers, labels
    # per layer: Q, K, V and the attention output; FFN in and out; attention scores and context (every head at once)
    layer = 4 * B * T * H * H * 2 + 2 * B * T * H * FFN * 2 + 2 * B * T * T * H * 2
    closed = L * layer + B * H * H * 2 + B * H * C * 2  # + the pooler (on the first token) and the classifier
    random_state = torch.get_rng_state()
    assert forward_flops(model, probe) == closed
    assert torch.equal(torch.get_rng_state(), random_state) and model.training  # nothing drawn, training mode back
    result = train(model, features, collate, TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3))
    assert (result.steps, result.examples, result.forward_flops) == (10, 80, closed)
    assert result.train_flops == 3 * closed * 10
    ledger = result.cost(eval_time_s=0.5)
    assert ledger["train_flops"] == result.train_flops and ledger["train_time_s"] == result.time_s
    assert ledger["eval_time_s"] == 0.5 and "dense" in ledger["flops"]


def fit_line(checkpoint, hooks=(), learning_rate=1e-2):
    """A linear model on 24 points, 3 epochs of 6 batches: the weights depend on every epoch's data order."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    features = [{"x": [float(i), float(i % 3)], "y": float(i % 2)} for i in range(24)]

    def collate(rows):
        return {"x": torch.tensor([r["x"] for r in rows]), "y": torch.tensor([r["y"] for r in rows])}

    def forward(model, batch, generator):
        return type("Output", (), {"loss": torch.nn.functional.mse_loss(model(batch["x"]).squeeze(-1), batch["y"])})()

    config = TrainConfig(epochs=3, batch_size=4, learning_rate=learning_rate)
    result = train(
        model, features, collate, config, hooks=hooks, checkpoint=checkpoint, checkpoint_every=1, forward=forward
    )
    return model, result


@pytest.mark.parametrize("at", [3, 6, 8, 13])  # inside epoch 0, at its end, inside epoch 1, inside epoch 2
def test_a_run_resumed_in_any_epoch_ends_with_the_uninterrupted_weights(tmp_path, at):
    expected, straight = fit_line(tmp_path / "straight.pt")
    with pytest.raises(KeyboardInterrupt):
        fit_line(tmp_path / "resumed.pt", hooks=[StopAfter(at)])
    resumed, again = fit_line(tmp_path / "resumed.pt")
    assert torch.equal(resumed.weight, expected.weight) and torch.equal(resumed.bias, expected.bias)
    ledger = ("steps", "examples", "forward_flops", "train_flops")  # a Linear(2, 1) on batches of 4: 16 FLOPs a pass
    assert [getattr(again, k) for k in ledger] == [getattr(straight, k) for k in ledger] == [18, 72, 16, 3 * 16 * 18]


def test_a_resumed_run_reports_the_training_time_of_every_attempt(tmp_path):
    checkpoint = tmp_path / "resumed.pt"
    with pytest.raises(KeyboardInterrupt):
        fit_line(checkpoint, hooks=[StopAfter(5)])
    state = torch.load(checkpoint, weights_only=True)
    assert state["step"] == 4 and state["time_s"] > 0
    torch.save({**state, "time_s": 1000.0}, checkpoint)  # as if the first attempt had trained for that long
    _, result = fit_line(checkpoint)
    assert result.steps == 18 and 1000.0 < result.time_s < 1000.0 + 60


def test_a_loss_that_turns_nan_or_inf_stops_training_before_a_checkpoint_holds_it(tmp_path):
    checkpoint = tmp_path / "diverged.pt"
    diverged = r"^the training loss is (nan|inf) at step \d+ of training; lower the learning rate"
    with pytest.raises(TicketlabError, match=diverged) as error:
        fit_line(checkpoint, learning_rate=1e30)
    step = int(re.search(r"step (\d+)", str(error.value)).group(1))
    kept = torch.load(checkpoint, weights_only=True)
    assert kept["step"] == step - 1 and all(torch.isfinite(w).all() for w in kept["model"].values())


def test_batchnorm_statistics_that_turn_inf_stop_training_before_a_checkpoint_holds_them(tmp_path):
    """Inputs so large that their variance overflows float32: the loss and the weights stay finite (normalised by an
    infinite variance, the inputs become zeros), BatchNorm's running_var does not."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(2), torch.nn.Linear(2, 1))
    features = [{"x": [i * 1e20, float(i % 3)], "y": float(i % 2)} for i in range(24)]

    def collate(rows):
        return {"x": torch.tensor([r["x"] for r in rows]), "y": torch.tensor([r["y"] for r in rows])}

    def forward(model, batch, generator):
        return type("Output", (), {"loss": torch.nn.functional.mse_loss(model(batch["x"]).squeeze(-1), batch["y"])})()

    checkpoint = tmp_path / "diverged.pt"
    with pytest.raises(TicketlabError, match=r"^the weights turned nan or inf \(0.running_var first\) at step 1 "):
        config = TrainConfig(epochs=1, batch_size=4)
        train(model, features, collate, config, checkpoint=checkpoint, checkpoint_every=1, forward=forward)
    assert not checkpoint.exists() and all(p.isfinite().all() for p in model.parameters())


def test_a_checkpoint_of_another_launch_size_is_discarded_in_one_line(tmp_path, caplog):
    path = tmp_path / "checkpoint.pt"
    state = {key: [] for key in CHECKPOINT_KEYS}
    state.update(rng=[torch.get_rng_state()] * 2, loss_sum=[torch.zeros(())] * 2)  # what 2 processes write
    torch.save(state, path)
    assert not usable_checkpoint(path) and not path.exists()
    assert "was written by 2 processes, and this launch has 1; discarding it" in caplog.text
