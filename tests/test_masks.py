import pytest
import torch
from conftest import tiny_bert_config
from transformers import BertForSequenceClassification

from ticketlab import apply_ticket
from ticketlab.errors import TicketlabError
from ticketlab.masks import iou, load_mask, ones_like, save_mask, sparsity
from ticketlab.models import prunable_weights
from ticketlab.pruning import magnitude_prune


def tiny_model(**overrides):
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(vocab_size=100, **overrides))


def test_mask_round_trips_with_its_metadata(tmp_path):
    weights = prunable_weights(tiny_model())
    mask = magnitude_prune(weights, ones_like(weights), 0.6)
    save_mask(tmp_path / "m.safetensors", mask, {"task": "sst2", "round": 3})
    loaded, metadata = load_mask(tmp_path / "m.safetensors")
    assert metadata == {"task": "sst2", "round": "3"}
    assert loaded.keys() == mask.keys()
    assert all(torch.equal(loaded[n], mask[n]) and loaded[n].dtype == torch.bool for n in mask)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_apply_ticket_zeroes_exactly_the_pruned_weights():
    model = tiny_model()
    weights = prunable_weights(model)
    mask = magnitude_prune(weights, ones_like(weights), 0.5)
    before = {n: w.detach().clone() for n, w in weights.items()}
    apply_ticket(model, mask)
    for name, w in prunable_weights(model).items():
        assert torch.equal(w[mask[name]], before[name][mask[name]])
        assert (w[~mask[name]] == 0).all()
    assert sparsity(mask) == pytest.approx(0.5, abs=1e-6)


def test_apply_ticket_refuses_a_mask_of_another_model():
    mask = ones_like(prunable_weights(tiny_model(num_hidden_layers=3)))
    with pytest.raises(TicketlabError, match="does not fit"):
        apply_ticket(tiny_model(), mask)
    wider = ones_like(prunable_weights(tiny_model(intermediate_size=128)))
    with pytest.raises(TicketlabError, match=r"intermediate\.dense\.weight is \(128, 32\) in the mask, \(64, 32\)"):
        apply_ticket(tiny_model(), wider)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\xff" * 64])
def test_corrupt_mask_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(TicketlabError, match="not a readable mask file"):
        load_mask(path)


def test_truncated_mask_file_is_a_clear_error(tmp_path):
    weights = prunable_weights(tiny_model())
    save_mask(tmp_path / "m.safetensors", ones_like(weights), {})
    raw = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TicketlabError):
        load_mask(tmp_path / "m.safetensors")


def test_iou_counts_the_weights_both_masks_have():
    a = {"w": torch.tensor([True, True, False, False]), "pooler": torch.tensor([True, False])}
    b = {"w": torch.tensor([True, False, True, False])}
    assert iou(a, b) == 1 / 3  # the pooler only a has is left out
    assert iou(a, a) == 1.0
    assert iou(a, {name: ~m for name, m in a.items()}) == 0.0
    with pytest.raises(TicketlabError, match="shape of w"):
        iou(a, {"w": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(TicketlabError, match="no weight in common"):
        iou(a, {"other": torch.ones(4, dtype=torch.bool)})
