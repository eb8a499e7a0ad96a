"""The prunable scope is found by structure, across BERT-family architectures."""

import pytest
from conftest import tiny_bert_config
from transformers import (
    AutoModelForSequenceClassification,
    DistilBertConfig,
    ElectraConfig,
    MPNetConfig,
    RobertaConfig,
)

from ticketlab.models import backbone, head_parameters, prunable_weights

SMALL = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)

CONFIGS = {
    "bert": (tiny_bert_config(vocab_size=100), 6 * 2 + 1),  # + pooler
    "roberta": (RobertaConfig(**SMALL), 6 * 2),  # its classification model has no pooler
    "mpnet": (MPNetConfig(**SMALL), 6 * 2),
    "electra": (ElectraConfig(**SMALL, embedding_size=16), 6 * 2),  # no pooler; embedding projection not pruned
    "distilbert": (DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64), 6 * 2),
}


@pytest.mark.parametrize("family", CONFIGS)
def test_prunable_weights_are_the_linear_maps_of_the_layers_and_pooler(family):
    config, expected = CONFIGS[family]
    model = AutoModelForSequenceClassification.from_config(config)
    weights = prunable_weights(model)
    assert len(weights) == expected
    base_params = dict(backbone(model).named_parameters())
    for name, w in weights.items():
        assert base_params[name] is w and w.ndim == 2
    embedding = backbone(model).get_input_embeddings().weight
    assert all(w is not embedding for w in weights.values())
    head = {id(p) for p in head_parameters(model).values()}
    assert head and not head & {id(w) for w in weights.values()}


def test_scope_does_not_depend_on_the_layer_count():
    model = AutoModelForSequenceClassification.from_config(tiny_bert_config(vocab_size=100, num_hidden_layers=5))
    assert len(prunable_weights(model)) == 6 * 5 + 1
    assert "pooler.dense.weight" in prunable_weights(model)
    assert all(not name.startswith("embeddings") for name in prunable_weights(model))
