"""Structured compaction: removing heads and FFN neurons gives exactly the masked model, smaller, and it saves and
loads."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
    ElectraConfig,
    ElectraForMaskedLM,
    RobertaConfig,
    RobertaForSequenceClassification,
)

import ticketlab
from ticketlab import TicketlabError
from ticketlab.earlybert import (
    compact,
    full_structure,
    layer_modules,
    layer_shapes,
    load_compact,
    save_compact,
    scale_structures,
    structure_mask,
)
from ticketlab.masks import apply_mask, sparsity
from ticketlab.models import prunable_weights

HIDDEN, HEADS, FFN, LAYERS = 32, 4, 37, 3
HEAD_SIZE = HIDDEN // HEADS
TOLERANCE = 1e-5


def tiny_config(cls=BertConfig, **overrides):
    settings = dict(
        vocab_size=100,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=64,
    )
    return cls(**{**settings, **overrides})


def build(cls, config=None, seed=0):
    torch.manual_seed(seed)
    return cls(config or tiny_config()).eval()


def inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (2, 11), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0  # padding takes the masked attention path
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@torch.no_grad()
def outputs(model, batch) -> torch.Tensor:
    """Every output tensor of the model, flattened into one."""
    result = model(**batch)
    return torch.cat([value.flatten() for value in result.values() if isinstance(value, torch.Tensor)])


def masked_outputs(model, structure, batch) -> torch.Tensor:
    with scale_structures(model, {name: kept.float() for name, kept in structure.items()}):
        return outputs(model, batch)


def random_structure(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    structure = {}
    for i in range(LAYERS):
        for kind, size in (("heads", HEADS), ("ffn", FFN)):
            kept = torch.rand(size, generator=generator) < 0.5
            kept[torch.randint(size, (1,), generator=generator)] = True  # each layer keeps one at least
            structure[f"{kind}.{i}"] = kept
    return structure


def pattern_structure() -> dict[str, torch.Tensor]:
    """Layer 0 keeps one head and 5 neurons, layer 1 is untouched, layer 2 loses one head and 7 neurons."""
    return {
        "heads.0": torch.tensor([False, False, True, False]),
        "ffn.0": torch.arange(FFN) % 7 == 3,
        "heads.1": torch.ones(HEADS, dtype=torch.bool),
        "ffn.1": torch.ones(FFN, dtype=torch.bool),
        "heads.2": torch.tensor([True, True, False, True]),
        "ffn.2": torch.arange(FFN) >= 7,
    }


STRUCTURES = {
    "random0": lambda: random_structure(0),
    "random1": lambda: random_structure(1),
    "random2": lambda: random_structure(2),
    "pattern": pattern_structure,
}


def removed_parameters(structure) -> int:
    """Q, K, V rows with biases and attention-output columns per head; FFN-in row, bias and FFN-out column per
    neuron."""
    heads = sum(int((~kept).sum()) for name, kept in structure.items() if name.startswith("heads."))
    neurons = sum(int((~kept).sum()) for name, kept in structure.items() if name.startswith("ffn."))
    return heads * (4 * HIDDEN * HEAD_SIZE + 3 * HEAD_SIZE) + neurons * (2 * HIDDEN + 1)


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("pattern", STRUCTURES)
@pytest.mark.parametrize("cls", [BertModel, BertForSequenceClassification, BertForMaskedLM])
def test_compacted_model_equals_masked_model(cls, pattern):
    model, structure, batch = build(cls), STRUCTURES[pattern](), inputs()
    expected = masked_outputs(model, structure, batch)
    dense = outputs(model, batch)
    compacted = compact(copy.deepcopy(model), structure)
    assert (outputs(compacted, batch) - expected).abs().max() <= TOLERANCE
    if pattern == "pattern":
        assert (dense - expected).abs().max() > 10 * TOLERANCE  # the structure does change the function
    assert count(model) - count(compacted) == removed_parameters(structure)
    kept = [(int(structure[f"heads.{i}"].sum()), int(structure[f"ffn.{i}"].sum())) for i in range(LAYERS)]
    assert layer_shapes(compacted) == kept
    assert [(m.attention.num_attention_heads, m.attention.all_head_size) for m in layer_modules(compacted)] == [
        (heads, heads * HEAD_SIZE) for heads, _ in kept
    ]
    assert compacted.config.layer_heads == [h for h, _ in kept] and compacted.config.layer_intermediate_sizes == [
        n for _, n in kept
    ]
    assert compacted.config.attention_head_size == HEAD_SIZE and compacted.config.num_attention_heads == HEADS
    assert isinstance(compacted, cls) and type(compacted).__name__ == f"Compact{cls.__name__}"
    assert model.config.model_type == "bert" and not hasattr(
        model.config, "layer_heads"
    )  # the dense config is untouched


def test_compacting_again_prunes_a_compacted_model_further():
    model, batch = build(BertForSequenceClassification), inputs()
    first = pattern_structure()
    compacted = compact(copy.deepcopy(model), first)
    second = full_structure(compacted)
    second["heads.1"][1] = False
    second["ffn.2"][:10] = False
    expected = masked_outputs(compacted, second, batch)
    twice = compact(compacted, second)
    assert (outputs(twice, batch) - expected).abs().max() <= TOLERANCE
    assert layer_shapes(twice) == [(1, 5), (3, FFN), (3, 20)]


def test_padding_the_ffn_with_zero_neurons_keeps_the_outputs(tmp_path):
    model, structure, batch = build(BertForSequenceClassification), random_structure(5), inputs()
    expected = masked_outputs(model, structure, batch)
    padded = compact(copy.deepcopy(model), structure, ffn_multiple_of=8)
    kept = [int(structure[f"ffn.{i}"].sum()) for i in range(LAYERS)]
    assert [neurons for _, neurons in layer_shapes(padded)] == [-(-n // 8) * 8 for n in kept]
    assert (outputs(padded, batch) - expected).abs().max() <= TOLERANCE
    padding = sum(-n % 8 for n in kept)
    assert count(model) - count(padded) == removed_parameters(structure) - padding * (2 * HIDDEN + 1)
    assert torch.equal(outputs(load_compact(save_compact(padded, tmp_path / "padded")), batch), outputs(padded, batch))
    with pytest.raises(TicketlabError, match="ffn_multiple_of must be a positive integer"):
        compact(model, structure, ffn_multiple_of=0)


def test_unstructured_equivalent_marks_exactly_the_pruned_rows_and_columns():
    model, structure = build(BertModel), pattern_structure()
    mask = structure_mask(model, structure)
    weights = prunable_weights(model)
    assert set(mask) == set(weights) and all(mask[n].shape == w.shape for n, w in weights.items())
    for i in range(LAYERS):
        rows = structure[f"heads.{i}"].repeat_interleave(HEAD_SIZE)
        neurons = structure[f"ffn.{i}"]
        prefix = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            assert torch.equal(mask[prefix + f"attention.self.{name}.weight"], rows[:, None].expand(-1, HIDDEN))
        assert torch.equal(mask[prefix + "attention.output.dense.weight"], rows[None, :].expand(HIDDEN, -1))
        assert torch.equal(mask[prefix + "intermediate.dense.weight"], neurons[:, None].expand(-1, HIDDEN))
        assert torch.equal(mask[prefix + "output.dense.weight"], neurons[None, :].expand(HIDDEN, -1))
    assert mask["pooler.dense.weight"].all()
    # by hand: layer 0 loses 3 heads and 32 neurons, layer 2 one head and 7 neurons
    pruned = (3 + 1) * 4 * HIDDEN * HEAD_SIZE + (32 + 7) * 2 * HIDDEN
    total = LAYERS * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN) + HIDDEN * HIDDEN
    assert sparsity(mask) == pytest.approx(pruned / total, abs=1e-12)
    assert sparsity(structure_mask(model, full_structure(model))) == 0.0


def test_zeroing_the_unstructured_equivalent_computes_the_compacted_model():
    model, structure, batch = build(BertForSequenceClassification), random_structure(3), inputs()
    zeroed = copy.deepcopy(model)
    apply_mask(prunable_weights(zeroed), structure_mask(zeroed, structure))
    compacted = compact(copy.deepcopy(model), structure)
    assert (outputs(zeroed, batch) - outputs(compacted, batch)).abs().max() <= TOLERANCE


@pytest.mark.parametrize(
    "cls, auto_class",
    [
        (BertModel, AutoModel),
        (BertForSequenceClassification, AutoModelForSequenceClassification),
        (BertForMaskedLM, AutoModelForMaskedLM),
        (BertForQuestionAnswering, AutoModelForQuestionAnswering),
    ],
)
def test_compacted_folder_loads_back_with_identical_outputs(tmp_path, cls, auto_class):
    batch = inputs()
    compacted = compact(build(cls), pattern_structure())
    expected = outputs(compacted, batch)
    path = save_compact(compacted, tmp_path / "compact")
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "ticketlab-compact-bert" and config["architectures"] == [f"Compact{cls.__name__}"]
    assert config["layer_heads"] == [1, 4, 3] and config["layer_intermediate_sizes"] == [5, FFN, 30]
    assert config["attention_head_size"] == HEAD_SIZE
    for loaded in (
        load_compact(path),
        auto_class.from_pretrained(path),
    ):  # the Auto classes know it after `import ticketlab`
        assert type(loaded) is type(compacted) and not loaded.training
        assert layer_shapes(loaded) == layer_shapes(compacted)
        assert torch.equal(outputs(loaded, batch), expected)
    if cls is BertForMaskedLM:
        loaded = load_compact(path)
        assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight  # still tied


def test_backbone_of_a_saved_task_model_loads_alone_and_a_saved_folder_is_replaced(tmp_path):
    batch = inputs()
    compacted = compact(build(BertForMaskedLM), random_structure(4))
    path = save_compact(compacted, tmp_path / "compact", tokenizer=_Tokenizer())
    assert (path / "tokenizer.txt").is_file()
    encoder = load_compact(path, AutoModel)
    assert type(encoder).__name__ == "CompactBertModel"  # its pooler is new: BertForMaskedLM has none
    assert torch.equal(encoder(**batch).last_hidden_state, compacted.bert(**batch).last_hidden_state)
    again = compact(build(BertForMaskedLM, seed=1), pattern_structure())
    save_compact(again, path)  # the same folder again: replaced atomically
    assert layer_shapes(load_compact(path)) == layer_shapes(again) and not (path / "tokenizer.txt").exists()


@pytest.mark.parametrize(
    "cls, config",
    [
        (RobertaForSequenceClassification, tiny_config(RobertaConfig, pad_token_id=1, type_vocab_size=1)),
        (ElectraForMaskedLM, tiny_config(ElectraConfig, embedding_size=16)),
    ],
)
def test_roberta_and_electra_compact_save_and_load(tmp_path, cls, config):
    model, structure, batch = build(cls, config), pattern_structure(), inputs()
    expected = masked_outputs(model, structure, batch)
    compacted = compact(model, structure)
    assert (outputs(compacted, batch) - expected).abs().max() <= TOLERANCE
    loaded = load_compact(save_compact(compacted, tmp_path / "compact"))
    assert type(loaded).__name__ == f"Compact{cls.__name__}"
    assert torch.equal(outputs(loaded, batch), outputs(compacted, batch))


def test_gradients_reach_the_scales_and_removing_the_hooks_restores_the_model():
    model, batch = build(BertForSequenceClassification), inputs()
    dense = outputs(model, batch)
    scales = {"heads.0": nn.Parameter(torch.ones(HEADS)), "ffn.2": nn.Parameter(torch.ones(FFN))}  # some layers only
    hooks = scale_structures(model, scales)
    assert torch.equal(outputs(model, batch), dense)  # scales of 1 change nothing
    model(**batch).logits.square().sum().backward()
    assert all(scale.grad is not None and scale.grad.abs().sum() > 0 for scale in scales.values())
    with torch.no_grad():
        scales["heads.0"][1] = 0.0
    assert not torch.allclose(outputs(model, batch), dense)
    hooks.remove()
    assert torch.equal(outputs(model, batch), dense)


def test_scales_work_under_bf16_autocast():
    model, batch = build(BertForSequenceClassification), inputs()
    scales = {name: nn.Parameter(torch.ones(kept.shape)) for name, kept in full_structure(model).items()}
    with scale_structures(model, scales), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(**batch).logits
    logits.float().sum().backward()
    assert all(scale.grad is not None and scale.grad.dtype == torch.float32 for scale in scales.values())


def _without(name):
    return lambda s: {k: v for k, v in s.items() if k != name}


def _replace(name, value):
    return lambda s: {**s, name: value}


@pytest.mark.parametrize(
    "edit, message",
    [
        (_without("heads.1"), "no entry for heads.1"),
        (_without("ffn.2"), "no entry for ffn.2"),
        (_replace("heads.0", torch.ones(HEADS + 1, dtype=torch.bool)), "heads.0 has shape (5,), layer 0 has 4 heads"),
        (_replace("ffn.1", torch.ones(FFN - 1, dtype=torch.bool)), "ffn.1 has shape (36,), layer 1 has 37 FFN neurons"),
        (_replace("heads.3", torch.ones(HEADS, dtype=torch.bool)), "'heads.3' is not heads.i or ffn.i"),
        (_replace("heads.2", torch.zeros(HEADS, dtype=torch.bool)), "prunes every head of layer 2"),
        (_replace("ffn.0", torch.zeros(FFN, dtype=torch.bool)), "prunes every FFN neuron of layer 0"),
        (_replace("heads.0", torch.ones(HEADS)), "bool tensors"),
    ],
)
def test_bad_structures_are_one_line_errors(edit, message):
    model = build(BertModel)
    structure = edit(full_structure(model))
    for function in (compact, structure_mask):
        with pytest.raises(TicketlabError, match=re.escape(message)) as error:
            function(model, structure)
        assert "\n" not in str(error.value)
    assert layer_shapes(model) == [(HEADS, FFN)] * LAYERS  # nothing was cut


def test_bad_scales_and_other_architectures_are_one_line_errors():
    model = build(BertModel)
    with pytest.raises(TicketlabError, match="heads.0 has shape"):
        scale_structures(model, {"heads.0": torch.ones(3)})
    with pytest.raises(TicketlabError, match="float tensors"):
        scale_structures(model, {"ffn.0": torch.ones(FFN, dtype=torch.bool)})
    distil = DistilBertModel(DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=37))
    for function in (layer_shapes, full_structure, lambda m: compact(m, {})):
        with pytest.raises(
            TicketlabError, match="DistilBertModel: structured pruning needs the BERT layer layout"
        ) as error:
            function(distil)
        assert "\n" not in str(error.value)


def test_saving_needs_a_compacted_model_of_a_known_class(tmp_path):
    with pytest.raises(TicketlabError, match="not compacted; call compact"):
        save_compact(build(BertModel), tmp_path / "a")
    tokens = compact(build(BertForTokenClassification), pattern_structure())  # compaction works on any BERT layout
    with pytest.raises(TicketlabError, match="cannot save a compact BertForTokenClassification"):
        save_compact(tokens, tmp_path / "b")
    (tmp_path / "taken").mkdir()
    with pytest.raises(TicketlabError, match="not a compacted model folder; choose a new folder"):
        save_compact(compact(build(BertModel), pattern_structure()), tmp_path / "taken")
    with pytest.raises(TicketlabError, match="not a compacted model folder"):
        load_compact(tmp_path / "taken")
    assert ticketlab.load_compact is load_compact


class _Tokenizer:
    """Stands in for a tokenizer: save_compact only calls save_pretrained."""

    def save_pretrained(self, path):
        (path / "tokenizer.txt").write_text("vocabulary")
