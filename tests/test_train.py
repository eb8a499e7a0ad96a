"""The training loop keeps pruned weights at exactly zero, and a resumed run ends where an uninterrupted one does."""

import pytest
import torch
from transformers import AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding

from conftest import tiny_bert_config
from ticketlab.assets import asset_path
from ticketlab.config import TrainConfig
from ticketlab.masks import ones_like
from ticketlab.models import prunable_weights
from ticketlab.pruning import magnitude_prune
from ticketlab.train import MaskEnforcer, TrainHook, train


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
    train(model, features, DataCollatorWithPadding(tokenizer), config, hooks=[MaskEnforcer(list(weights.values()), list(mask.values()))])
    for name, w in weights.items():
        assert (w[~mask[name]] == 0).all()
        assert not torch.equal(w[mask[name]], before[name][mask[name]])  # the kept weights did train


class StopAfter(TrainHook):
    """Interrupts training (as a KeyboardInterrupt would) after the `at`-th step."""

    def __init__(self, at: int):
        self.at = at

    def after_step(self, step, model):
        if step == self.at:
            raise KeyboardInterrupt


def fit_line(checkpoint, hooks=()):
    """A linear model on 24 points, 3 epochs of 6 batches: the weights depend on every epoch's data order."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    features = [{"x": [float(i), float(i % 3)], "y": float(i % 2)} for i in range(24)]

    def collate(rows):
        return {"x": torch.tensor([r["x"] for r in rows]), "y": torch.tensor([r["y"] for r in rows])}

    def forward(model, batch):
        return type("Output", (), {"loss": torch.nn.functional.mse_loss(model(batch["x"]).squeeze(-1), batch["y"])})()

    config = TrainConfig(epochs=3, batch_size=4, learning_rate=1e-2)
    train(model, features, collate, config, hooks=hooks, checkpoint=checkpoint, checkpoint_every=1, forward=forward)
    return model


@pytest.mark.parametrize("at", [3, 6, 8, 13])  # inside epoch 0, at its end, inside epoch 1, inside epoch 2
def test_a_run_resumed_in_any_epoch_ends_with_the_uninterrupted_weights(tmp_path, at):
    expected = fit_line(tmp_path / "straight.pt")
    with pytest.raises(KeyboardInterrupt):
        fit_line(tmp_path / "resumed.pt", hooks=[StopAfter(at)])
    resumed = fit_line(tmp_path / "resumed.pt")
    assert torch.equal(resumed.weight, expected.weight) and torch.equal(resumed.bias, expected.bias)
