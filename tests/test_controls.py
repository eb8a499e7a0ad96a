"""The control experiments and transfer, on a tiny random BERT: each control changes exactly what it says."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch
from helpers import run_cli, write_glue
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

import ticketlab
from ticketlab.controls import CONTROLS, NOISE_SCALE
from ticketlab.errors import TicketlabError
from ticketlab.lottery import transfer
from ticketlab.lottery.imp import control_rounds
from ticketlab.masks import load_mask, ones_like, sparsity
from ticketlab.models import backbone, load_pretrained, prunable_weights
from ticketlab.pruning import magnitude_prune
from ticketlab.store import RunStore
from ticketlab.train.hooks import TrainHook

FAST = dict(train_examples=32, batch_size=16, epochs=1, learning_rate=1e-3, seed=5, rate=0.2)


class RecordStart(TrainHook):
    """The prunable weights at the start of every training, in order."""

    def __init__(self):
        self.starts = []

    def before_train(self, model):
        self.starts.append({k: w.detach().clone() for k, w in prunable_weights(model).items()})


@pytest.fixture(scope="module")
def controlled(tiny_model_dir, reviews, tmp_path_factory):
    """IMP to 60% (20%, 40%, 60%) with every control at every level, and the start weights of each training."""
    recorder = RecordStart()
    result = ticketlab.find(
        str(tiny_model_dir),
        data=str(reviews),
        sparsity=0.6,
        out=tmp_path_factory.mktemp("runs"),
        controls=tuple(CONTROLS),
        hooks=[recorder],
        **FAST,
    )
    theta0 = {
        k: w.detach().clone()
        for k, w in prunable_weights(
            load_pretrained(tiny_model_dir, AutoModelForSequenceClassification, FAST["seed"], num_labels=2)
        ).items()
    }
    return RunStore(result.path), recorder.starts, theta0


def starts_by_branch(starts):
    """Trainings run IMP rounds 0-3, then each control (sorted) at each round it has; inverted lacks 20% (no 80%
    round)."""
    order = [("imp", r) for r in range(4)] + [
        (c, r) for c in CONTROLS for r in (1, 2, 3) if not (c == "inverted" and r == 1)
    ]
    assert len(starts) == len(order)
    return dict(zip(order, starts))


def test_every_control_has_its_sparsity_level_exactly(controlled):
    store, _, theta0 = controlled
    total = sum(w.numel() for w in theta0.values())
    for control in CONTROLS:
        branch = store.branch(control)
        rounds = [2, 3] if control == "inverted" else [1, 2, 3]
        assert branch.completed_rounds() == rounds
        for round in rounds:
            record = branch.metrics(round)
            mask = load_mask(branch.mask_path(round))[0]
            assert record["arm"] == control and record["level"] == pytest.approx(0.2 * round)
            pruned = sum(int((~m).sum()) for m in mask.values())
            if control == "random-per-matrix":  # every matrix rounds on its own: checked per matrix below
                assert abs(pruned - 0.2 * round * total) <= len(mask)
            elif control in (
                "inverted",
                "one-shot",
                "reinit",
                "shuffle",
                "noise",
            ):  # the layer stack and the pooler round apart
                assert abs(pruned - 0.2 * round * total) <= 1
            else:
                assert pruned == builtins.round(0.2 * round * total)
            assert record["sparsity"] == pytest.approx(sparsity(mask)) and "accuracy" in record["dev"]


def test_masks_differ_from_imp_as_intended(controlled):
    store, _, _ = controlled
    imp = {r: load_mask(store.mask_path(r))[0] for r in range(4)}
    branch = {
        c: {r: load_mask(store.branch(c).mask_path(r))[0] for r in store.branch(c).completed_rounds()} for c in CONTROLS
    }
    dense = {k: v for k, v in load_file(str(store.weights_path(0))).items() if k.startswith("bert.")}
    dense = {k.removeprefix("bert."): v for k, v in dense.items() if k.removeprefix("bert.") in imp[0]}
    rankings = [[n for n in dense if n.startswith("encoder.")], ["pooler.dense.weight"]]  # the default scope, "layers"
    for r in (1, 2, 3):
        for c in ("reinit", "shuffle", "noise"):
            assert all(torch.equal(branch[c][r][n], imp[r][n]) for n in imp[r])
        expected = magnitude_prune(dense, ones_like(dense), 0.2 * r, rankings)
        assert all(torch.equal(branch["one-shot"][r][n], expected[n]) for n in expected)
        assert any(not torch.equal(branch["random"][r][n], imp[r][n]) for n in imp[r])
        for name, kept in branch["random-per-matrix"][r].items():
            assert int((~kept).sum()) == round(0.2 * r * kept.numel())
    for r, complement in ((2, 3), (3, 2)):  # 40% <-> 60%: the complement, pruning exactly what IMP keeps
        assert all(torch.equal(branch["inverted"][r][n], ~imp[complement][n]) for n in imp[r])


def test_start_weights_differ_from_theta0_as_intended(controlled):
    store, starts, theta0 = controlled
    starts = starts_by_branch(starts)
    for r in (1, 2, 3):
        mask = load_mask(store.mask_path(r))[0]
        for name, w0 in theta0.items():
            kept = mask[name]
            for control in ("one-shot", "random", "random-per-matrix", "inverted"):
                if (control, r) in starts:
                    branch_mask = load_mask(store.branch(control).mask_path(r))[0][name]
                    assert torch.equal(starts[(control, r)][name], w0 * branch_mask)
            reinit, shuffled, noisy = (starts[(c, r)][name] for c in ("reinit", "shuffle", "noise"))
            assert not torch.isclose(reinit[kept], w0[kept]).any()
            assert torch.isin(shuffled[kept], w0).all() and not torch.equal(shuffled[kept], w0[kept])
            noise = noisy[kept] - w0[kept]
            assert float(noise.std()) == pytest.approx(NOISE_SCALE * float(w0.std()), rel=0.25)
            assert (reinit[~kept] == 0).all() and (shuffled[~kept] == 0).all() and (noisy[~kept] == 0).all()


def test_shuffle_permutes_each_matrix_and_noise_has_the_stated_scale():
    theta0 = {"a": torch.randn(40, 30), "b": torch.randn(20, 10)}
    shuffled = CONTROLS.get("shuffle").weights(theta0, None, torch.Generator().manual_seed(0))
    for name, w in theta0.items():
        assert torch.equal(shuffled[name].flatten().sort().values, w.flatten().sort().values)
        assert not torch.equal(shuffled[name], w)
    noisy = CONTROLS.get("noise").weights(theta0, None, torch.Generator().manual_seed(0))
    assert float((noisy["a"] - theta0["a"]).std()) == pytest.approx(NOISE_SCALE * float(theta0["a"].std()), rel=0.1)


def test_controls_rerun_is_a_no_op(controlled, tiny_model_dir, reviews):
    store, _, _ = controlled
    before = {p: p.stat().st_mtime_ns for p in store.path.rglob("metrics.json")}
    recorder = RecordStart()
    ticketlab.find(
        str(tiny_model_dir),
        data=str(reviews),
        sparsity=0.6,
        out=store.path.parent,
        controls=tuple(CONTROLS),
        hooks=[recorder],
        **FAST,
    )
    assert recorder.starts == [] and before == {p: p.stat().st_mtime_ns for p in store.path.rglob("metrics.json")}


def test_transfer_trains_the_ticket_on_another_task_from_theta0(controlled, tiny_model_dir, tmp_path):
    store, _, _ = controlled
    data = write_glue(tmp_path / "glue_data", "sst2")
    options = {k: v for k, v in FAST.items() if k != "seed"}
    record = transfer(f"{store.path}:2", "sst2", data=str(data), sparsity=0.6, out=store.path.parent, **options)
    assert (
        record["arm"] == "transfer"
        and record["source"]["task"] == "rotten-tomatoes"
        and record["level"] == pytest.approx(0.4)
    )
    target = RunStore(next(p for p in store.path.parent.glob("sst2_*")))
    assert target.config().train.seed == FAST["seed"] and target.is_complete(0)  # the same seed's dense baseline
    (branch,) = target.branches()
    ticket = load_mask(store.mask_path(2))[0]
    moved = load_mask(target.branch(branch).mask_path(2))[0]
    assert all(torch.equal(moved[n], ticket[n]) for n in ticket)


def test_transfer_prints_the_seed_it_ran_with(controlled, tmp_path):
    """Without --seed a transfer runs with its ticket's seed, and its closing line names that seed."""
    store, _, _ = controlled
    data = write_glue(tmp_path / "glue_data", "sst2")
    options = ["--train-examples", "32", "--batch-size", "16", "--epochs", "1", "--lr", "1e-3", "--rate", "0.2"]
    ticket = ["--ticket", f"{store.path}:2", "--task", "sst2", "--data", data, "--sparsity", "0.6"]
    done = run_cli("transfer", *ticket, *options, "--out", tmp_path / "runs")
    assert done.returncode == 0, done.stderr
    assert f"to sst2, seed {FAST['seed']}: " in done.stdout and "seed None" not in done.stdout


def test_transfer_refuses_a_ticket_of_another_base_model(controlled, tmp_path):
    store, _, _ = controlled
    other = tmp_path / "other"
    model = load_pretrained(store.config().model, AutoModelForSequenceClassification, 0, num_labels=2)
    with torch.no_grad():
        next(backbone(model).parameters()).add_(1.0)
    backbone(model).save_pretrained(other)
    for file in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source := Path(store.config().model) / file).exists():
            (other / file).write_bytes(source.read_bytes())
    with pytest.raises(TicketlabError, match="fits only its own base model"):
        transfer(f"{store.path}:2", "rotten-tomatoes", model=str(other), out=tmp_path / "runs", **FAST)
    done = run_cli(
        "transfer",
        "--ticket",
        f"{store.path}:2",
        "--task",
        "rotten-tomatoes",
        "--model",
        str(other),
        "--out",
        str(tmp_path / "runs"),
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "fits only its own base model" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_grid_transfers_every_pair_for_every_seed_and_reports(tiny_model_dir, reviews, tmp_path):
    data = write_glue(tmp_path / "glue_data", "sst2")
    out = tmp_path / "runs"
    done = run_cli(
        "grid",
        "--tasks",
        "rotten-tomatoes,sst2",
        "--data",
        f"sst2={data}",
        "--data",
        f"rotten-tomatoes={reviews}",
        "--model",
        str(tiny_model_dir),
        "--sparsity",
        "0.2",
        "--rate",
        "0.2",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--train-examples",
        "32",
        "--batch-size",
        "16",
        "--epochs",
        "1",
    )
    assert done.returncode == 0, done.stderr
    assert "Transfer at sparsity 20.0%" in done.stdout
    runs = sorted(out.glob("*/config.json"))
    assert len(runs) == 4  # two tasks x seeds 0, 1
    for config in runs:
        store = RunStore(config.parent)
        assert store.completed_rounds() == [0, 1] and store.branch("random").completed_rounds() == [1]
        (transferred,) = [b for b in store.branches() if b.startswith("transfer_")]
        other = "sst2" if store.config().task == "rotten-tomatoes" else "rotten-tomatoes"
        assert store.branch(transferred).metrics(1)["source"]["task"] == other


def test_controls_at_name_rounds_of_the_schedule():
    assert control_rounds([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], [0.9, 0.5, 0.7]) == [5, 7, 9]
    with pytest.raises(TicketlabError, match=r"^controls_at 0.55 is not a sparsity of the run's schedule: 0.1, 0.2$"):
        control_rounds([0.0, 0.1, 0.2], [0.55])


def test_controls_at_a_sparsity_train_that_round_only(tiny_model_dir, reviews, tmp_path):
    options = dict(data=str(reviews), sparsity=0.6, out=tmp_path, **FAST)
    result = ticketlab.find(str(tiny_model_dir), controls=["random"], controls_at=[0.4], **options)
    branch = RunStore.open(result.path).branch("random")
    assert [round for round in range(1, 4) if branch.is_complete(round)] == [2]
