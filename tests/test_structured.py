"""Structured tickets: drawing heads and FFN neurons from scores, the random baseline, the early-bird test,
and the training loop's early stop with the hook state it checkpoints."""

from __future__ import annotations

import pytest
import torch

from ticketlab.config import TrainConfig
from ticketlab.earlybert.draw import check_ratios, draw_structure, random_structure, structure_shapes
from ticketlab.errors import TicketlabError
from ticketlab.masks import hamming
from ticketlab.pruning.settle import SettleTest
from ticketlab.train.hooks import TrainHook
from ticketlab.train.loop import train


def scores_of(heads: list[list[float]], ffn: list[list[float]]) -> dict[str, torch.Tensor]:
    return {
        **{f"heads.{i}": torch.tensor(h) for i, h in enumerate(heads)},
        **{f"ffn.{i}": torch.tensor(n) for i, n in enumerate(ffn)},
    }


def test_heads_go_per_layer_and_neurons_globally():
    scores = scores_of(
        heads=[[0.9, -0.1, 0.5], [0.2, 0.3, -0.8]],
        ffn=[[0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.7, 0.05]],
    )
    ticket = draw_structure(scores, heads=1 / 3, ffn=0.5)
    assert ticket["heads.0"].tolist() == [True, False, True]  # |-0.1| is the smallest
    assert ticket["heads.1"].tolist() == [False, True, True]  # |-0.8| is large: kept
    assert ticket["ffn.0"].tolist() == [False, False, False, True]  # the 4 of 8 smallest |score| go, over both layers
    assert ticket["ffn.1"].tolist() == [True, True, True, False]


def test_every_layer_keeps_its_best_neuron_and_ties_keep_the_lower_index():
    scores = scores_of(heads=[[1.0, 1.0], [1.0, 1.0]], ffn=[[0.01, 0.02], [5.0, 6.0]])
    ticket = draw_structure(scores, heads=0.5, ffn=0.5)
    assert ticket["heads.0"].tolist() == [True, False] and ticket["heads.1"].tolist() == [True, False]
    assert ticket["ffn.0"].tolist() == [False, True]  # the global cut would empty layer 0
    assert ticket["ffn.1"].tolist() == [False, True]


def test_random_structure_keeps_the_counts_of_each_layer():
    like = draw_structure(
        scores_of([[3.0, 2, 1, 0.5]] * 3, [list(torch.rand(20).tolist()) for _ in range(3)]), heads=0.25, ffn=0.4
    )
    first = random_structure(like, torch.Generator().manual_seed(1))
    again = random_structure(like, torch.Generator().manual_seed(1))
    other = random_structure(like, torch.Generator().manual_seed(2))
    for name in like:
        assert int(first[name].sum()) == int(like[name].sum())
        assert torch.equal(first[name], again[name])
    assert any(not torch.equal(first[name], other[name]) for name in like)
    assert structure_shapes(first) == [(4, 20)] * 3


def test_random_structure_does_not_depend_on_the_order_of_the_keys():
    like = draw_structure(
        scores_of([[3.0, 2, 1, 0.5]] * 3, [list(torch.rand(20).tolist()) for _ in range(3)]), heads=0.25, ffn=0.4
    )
    assert list(like) != sorted(like)  # as drawn: heads.0, heads.1, ..., ffn.0, ...; as read back from a file: sorted
    fresh = random_structure(like, torch.Generator().manual_seed(1))
    read_back = random_structure({name: like[name] for name in sorted(like)}, torch.Generator().manual_seed(1))
    assert fresh.keys() == read_back.keys() and all(torch.equal(fresh[name], read_back[name]) for name in fresh)


@pytest.mark.parametrize(
    "heads, ffn, message",
    [
        (0.0, 0.4, "--heads"),
        (1.0, 0.4, "--heads"),
        (-0.2, 0.4, "--heads"),
        (0.3, 0.0, "--ffn"),
        (0.3, 1.5, "--ffn"),
        (0.9, 0.4, "prunes all 2 heads of layer 0"),  # round(0.9 * 2) = 2 of 2
    ],
)
def test_bad_ratios_are_one_line_errors(heads, ffn, message):
    with pytest.raises(TicketlabError, match=message) as error:
        check_ratios([(2, 8), (2, 8)], heads, ffn)
    assert "\n" not in str(error.value)


def test_hamming_distance_is_the_fraction_of_flipped_entries():
    a = {"x": torch.tensor([True, True, False, False]), "y": torch.tensor([True])}
    b = {"x": torch.tensor([True, False, False, True]), "y": torch.tensor([True])}
    assert hamming(a, a) == 0.0
    assert hamming(a, b) == pytest.approx(2 / 5)
    with pytest.raises(TicketlabError):
        hamming(a, {"x": a["x"]})


def run_trace(trace: list[dict[str, torch.Tensor]], window: int = 5, threshold: float = 0.1):
    """Feed coefficient snapshots to the early-bird test; the index of the draw it stops at, or None."""
    bird = SettleTest(window, threshold)
    for index, scores in enumerate(trace):
        if bird.is_found(bird.observe(index, draw_structure(scores, heads=1 / 3, ffn=0.4))):
            return index
    return None


def test_early_bird_stops_once_the_coefficients_settle():
    generator = torch.Generator().manual_seed(0)
    target = scores_of(
        [torch.rand(6, generator=generator).tolist() for _ in range(4)],
        [torch.rand(50, generator=generator).tolist() for _ in range(4)],
    )
    trace = []
    for t in range(1, 60):  # noise shrinking like 1/t: the ranking settles
        trace.append({k: v + torch.randn(v.shape, generator=generator) / t for k, v in target.items()})
    stop = run_trace(trace)
    assert stop is not None and stop >= 5  # needs `window` earlier draws
    assert run_trace(trace[:stop]) is None  # and did not stop any earlier


def test_early_bird_never_stops_on_a_trace_that_keeps_changing():
    generator = torch.Generator().manual_seed(0)
    trace = [
        scores_of(
            [torch.rand(6, generator=generator).tolist() for _ in range(4)],
            [torch.rand(50, generator=generator).tolist() for _ in range(4)],
        )
        for _ in range(200)
    ]
    assert run_trace(trace) is None


def test_early_bird_settings_are_checked():
    with pytest.raises(TicketlabError, match="window"):
        SettleTest(window=0)
    with pytest.raises(TicketlabError, match="threshold"):
        SettleTest(threshold=1.5)


class StopAt(TrainHook):
    """Counts steps, stops at `at`; its count rides in checkpoints."""

    def __init__(self, at: int):
        self.at, self.count, self.loaded = at, 0, None

    def after_step(self, step, model):
        self.count += 1

    def should_stop(self):
        return self.count >= self.at

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = self.loaded = state["count"]


def test_a_hook_ends_training_early_and_resumes_from_its_checkpointed_state(tmp_path):
    model = torch.nn.Linear(3, 1)
    features = [{"x": [float(i), 1.0, -1.0], "y": float(i % 2)} for i in range(40)]

    def collate(rows):
        return {"x": torch.tensor([r["x"] for r in rows]), "y": torch.tensor([r["y"] for r in rows])}

    def forward(model, batch, generator):
        return type("Output", (), {"loss": torch.nn.functional.mse_loss(model(batch["x"]).squeeze(-1), batch["y"])})()

    config = TrainConfig(epochs=2, batch_size=4, learning_rate=1e-2)
    hook = StopAt(7)
    result = train(
        model,
        features,
        collate,
        config,
        hooks=[hook],
        checkpoint=tmp_path / "ckpt.pt",
        checkpoint_every=3,
        forward=forward,
    )
    assert result.steps == 7 and hook.count == 7  # of 20
    resumed = StopAt(7)
    result = train(
        torch.nn.Linear(3, 1),
        features,
        collate,
        config,
        hooks=[resumed],
        checkpoint=tmp_path / "ckpt.pt",
        checkpoint_every=3,
        forward=forward,
    )
    assert resumed.loaded == 6  # the last checkpoint (step 6) carried the hook's state
    assert result.steps == 7 and resumed.count == 7
