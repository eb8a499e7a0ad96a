"""The training loop keeps pruned weights at exactly zero."""

import torch
from transformers import AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding

from conftest import tiny_bert_config
from ticketlab.assets import asset_path
from ticketlab.config import TrainConfig
from ticketlab.masks import ones_like
from ticketlab.models import prunable_weights
from ticketlab.pruning import magnitude_prune
from ticketlab.train import MaskEnforcer, train


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
