"""IMP on the real embedded model: pre-trained splade-tiny on real Rotten Tomatoes snippets."""

import pytest

import ticketlab
from ticketlab.masks import sparsity

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAJORITY_CLASS_DEV_ACCURACY = 0.5576  # "fresh" share of the dev split


def test_imp_on_splade_tiny(tmp_path):
    result = ticketlab.find("splade-tiny", sparsity=0.1, out=tmp_path, train_examples=2048, max_length=48)
    assert [round(r["sparsity"], 6) for r in result.rounds] == [0.0, 0.1]  # the dense model and one ticket
    ticket = ticketlab.load_ticket(result.path)
    assert len(ticket) == 2 * 6 + 1  # q, k, v, attention output, FFN in, FFN out per layer, plus the pooler
    assert sum(m.numel() for m in ticket.values()) == 409_600
    assert sparsity(ticket) == pytest.approx(0.1, abs=1e-6)
    dense = result.rounds[0]["dev"]["accuracy"]
    assert dense > MAJORITY_CLASS_DEV_ACCURACY + 0.05  # the pre-trained model really learns the task
    assert result.rounds[-1]["dev"]["accuracy"] > MAJORITY_CLASS_DEV_ACCURACY + 0.03
