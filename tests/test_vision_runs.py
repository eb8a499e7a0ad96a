"""Vision runs end to end on a tiny ResNet and a tiny fake Fashion-MNIST: IMP's conv-only scope and rewinding,
transfer of a self-supervised ticket, pre-training (idempotent, exactly resumable), a recipe with pre-training and
its summary, and the new CLI verbs."""

from __future__ import annotations

import json
import logging
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import TINY_RESNET, TINY_RESNET_PRUNABLE, StopAfter, assert_same_outputs, flip, truncate
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForImageClassification

import ticketlab
from ticketlab.api import read_ticket
from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.experiment import run_experiment
from ticketlab.export import export_pruned
from ticketlab.lottery import resolve_config, transfer
from ticketlab.masks import load_mask
from ticketlab.models import ResNetConfig, ResNetModel, head_parameters, load_pretrained
from ticketlab.pretrain import PRETRAINING_METHODS, pretrain, pretrain_record
from ticketlab.pruning import sparsity_schedule
from ticketlab.recipe import Recipe, load_recipe
from ticketlab.report.build import build_report
from ticketlab.store import RunStore
from ticketlab.train.hooks import TrainHook

pytestmark = pytest.mark.usefixtures("one_thread")

PRETRAIN_MODULE = sys.modules["ticketlab.pretrain"]
FAST = dict(train_examples=64, batch_size=16, epochs=1, seed=3)
PRUNE = dict(schedule="geometric", rate=0.2)
PRETRAIN = dict(architecture="resnet-small", train_examples=32, batch_size=16, epochs=1)
DEV_METRIC = {"supervised": "accuracy", "simclr": "knn_accuracy", "moco": "knn_accuracy"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-resnet")
    torch.manual_seed(0)
    ResNetModel(ResNetConfig(**TINY_RESNET)).save_pretrained(path)
    return path


class RecordStart(TrainHook):
    """Copies the model's state at the start of every round."""

    def __init__(self):
        self.starts = []

    def before_train(self, model):
        self.starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


# --- IMP on an image task ---------------------------------------------------------------------------------------------


def test_imp_on_digits_prunes_convs_only_and_rewinds_to_theta0(tiny_dir, tmp_path):
    recorder = RecordStart()
    result = ticketlab.find(
        model=str(tiny_dir), task="digits", sparsity=0.36, out=tmp_path, save_weights=True, hooks=[recorder], **FAST
    )
    prune = RunStore(result.path).config().prune  # an image task's defaults: the CV code's
    assert (prune.schedule, prune.rate, prune.rewind_head) == ("geometric", 0.2, True)
    levels = sparsity_schedule("geometric", 0.2, 0.36)
    assert levels == pytest.approx([0.0, 0.2, 0.36]) and len(result.rounds) == 3 and len(recorder.starts) == 3
    theta0 = load_pretrained(tiny_dir, AutoModelForImageClassification, FAST["seed"], num_labels=10)
    initial = theta0.state_dict()
    head = set(head_parameters(theta0))
    assert head == {"fc.weight", "fc.bias"}
    total = 4 * 4 * 9 * 2 + 8 * 4 * 9 + 8 * 8 * 9 + 8 * 4  # the five pruned convs: 1,184 weights
    store = RunStore(result.path)
    previous = None
    for r, level in enumerate(levels):
        mask = ticketlab.load_ticket(result.path, round=r)
        assert set(mask) == TINY_RESNET_PRUNABLE  # no stem conv1, no fc, no BatchNorm
        assert sum(m.numel() for m in mask.values()) == total
        assert sum(int((~m).sum()) for m in mask.values()) == round(level * total)
        assert result.rounds[r]["sparsity"] == pytest.approx(round(level * total) / total)
        if previous is not None:
            assert all(not (mask[n] & ~previous[n]).any() for n in mask)  # nested
        previous = mask

        trained = load_file(str(store.weights_path(r)))
        for name, kept in mask.items():
            assert torch.equal(trained[f"resnet.{name}"] == 0, ~kept), (r, name)  # pruned exactly zero, kept ones alive
        for name in ("resnet.conv1.weight", "resnet.bn1.weight", "resnet.layer2.0.bn2.weight", "fc.weight"):
            assert bool((trained[name] != 0).all()), (r, name)

        start = recorder.starts[r]
        for name, value in initial.items():
            if name in head:
                continue
            relative = name.removeprefix("resnet.")
            expected = value * mask[relative] if relative in mask else value  # BatchNorm statistics rewound too
            assert torch.equal(start[name], expected), (r, name)
        # the CV code's default: every round rewinds the classifier too, to the one drawn for round 0
        assert all(torch.equal(start[name], initial[name]) for name in head)
        record = result.rounds[r]
        assert record["steps"] == 4 and 0.0 <= record["dev"]["accuracy"] <= 1.0


# --- transfer of a self-supervised ticket -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simclr_transfers(tiny_dir, fashion_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer-runs")
    options = dict(sparsity=0.2, out=out, train_examples=32, batch_size=16, epochs=1, **PRUNE)
    source = ticketlab.find(model=str(tiny_dir), task="fashion-mnist-simclr", data=str(fashion_dir), **options)
    records = {task: transfer(f"{source.path}:1", task, **options) for task in ("mnist", "digits")}
    return out, source, records


def test_a_simclr_ticket_transfers_to_mnist_and_digits(simclr_transfers):
    out, source, records = simclr_transfers
    assert [r["round"] for r in source.rounds] == [0, 1] and 0.0 <= source.rounds[1]["dev"]["knn_accuracy"] <= 1.0
    ticket, provenance = read_ticket(f"{source.path}:1")
    assert provenance["task"] == "fashion-mnist-simclr" and set(ticket) == TINY_RESNET_PRUNABLE
    for task, record in records.items():
        assert record["arm"] == "transfer" and record["source"]["task"] == "fashion-mnist-simclr"
        assert record["source"]["round"] == "1" and record["level"] == pytest.approx(0.2) and record["round"] == 1
        assert 0.0 <= record["dev"]["accuracy"] <= 1.0 and record["steps"] == 2
        (target,) = [p for p in out.iterdir() if p.name.startswith(f"{task}_")]
        store = RunStore(target)
        assert store.completed_rounds() == [0]  # the target's dense baseline, and no IMP round beyond it
        assert store.config().task == task
        branch = store.branch(f"transfer_fashion-mnist-simclr_{provenance['config_hash']}")
        assert branch.is_complete(1)
        moved, moved_provenance = load_mask(branch.mask_path(1))
        assert moved.keys() == ticket.keys() and all(torch.equal(moved[n], ticket[n]) for n in ticket)
        assert moved_provenance["task"] == task and moved_provenance["branch"].startswith("transfer_")


def test_the_report_of_vision_runs_has_curves_transfers_and_layers_but_no_heads(simclr_transfers):
    out, _, _ = simclr_transfers
    report = build_report([out])
    pngs = sorted(p.name for p in report.glob("*.png"))
    for task in ("fashion-mnist-simclr", "mnist", "digits"):
        assert f"curve_{task}.png" in pngs
    assert "transfer_20.png" in pngs and "layers_fashion-mnist-simclr.png" in pngs
    assert not any(name.startswith("heads_") for name in pngs)
    text = (report / "report.md").read_text()
    assert "## Transfer" in text and all(name in text for name in pngs)


def test_a_vision_ticket_exports_as_a_model_folder_without_a_tokenizer(simclr_transfers, tiny_dir, tmp_path):
    _, source, _ = simclr_transfers
    out = export_pruned(f"{source.path}:1", str(tiny_dir), tmp_path / "pruned")
    assert sorted(p.name for p in out.iterdir()) == ["COMPLETE", "config.json", "mask.safetensors", "model.safetensors"]
    mask, _ = read_ticket(f"{source.path}:1")
    model = AutoModel.from_pretrained(out)
    weights = dict(model.named_parameters())
    assert all(torch.equal(weights[name][~kept], torch.zeros_like(weights[name][~kept])) for name, kept in mask.items())
    assert all(int(kept.sum()) == int((weights[name] != 0).sum()) for name, kept in mask.items())


def test_colour_images_of_your_own_train_a_grayscale_model(tiny_dir, tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8), np.repeat([3, 7], 20)
    np.savez(tmp_path / "mine.npz", images=images, labels=labels)
    result = ticketlab.find(
        model=str(tiny_dir),
        task="images",
        data=str(tmp_path / "mine.npz"),
        sparsity=0.2,
        out=tmp_path / "runs",
        train_examples=32,
        batch_size=16,
        epochs=1,
        **PRUNE,
    )
    assert [r["steps"] for r in result.rounds] == [2, 2] and all(0 <= r["dev"]["accuracy"] <= 1 for r in result.rounds)


def test_rewinding_to_an_epoch_is_rewinding_to_its_last_step(tiny_dir):
    config = resolve_config(str(tiny_dir), "digits", None, 0.2, rewind_epoch=2, train_examples=40, batch_size=16)
    assert config.prune.rewind_step == 2 * 3  # 40 examples in batches of 16: 3 steps an epoch
    assert resolve_config(str(tiny_dir), "digits", None, 0.2, rewind_epoch=None).prune.rewind_step == 0
    with pytest.raises(TicketlabError, match="not both"):
        resolve_config(str(tiny_dir), "digits", None, 0.2, rewind_epoch=1, rewind_step=5)
    with pytest.raises(TicketlabError, match="rewind_epoch must be >= 0"):
        resolve_config(str(tiny_dir), "digits", None, 0.2, rewind_epoch=-1)


# --- pre-training -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained(fashion_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    return out, {method: pretrain(method, data=str(fashion_dir), out=out, **PRETRAIN) for method in PRETRAINING_METHODS}


@pytest.mark.parametrize("method", list(PRETRAINING_METHODS))
def test_pretrain_writes_a_model_folder_with_its_record(method, pretrained, fashion_dir):
    out, folders = pretrained
    folder = folders[method]
    assert folder.parent == out and folder.name.startswith(f"{method}_resnet-small_")
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "pretrain.json", "COMPLETE"}
    assert not list(out.glob(".*checkpoint*"))  # the checkpoint goes once the model is saved
    record = pretrain_record(folder)
    assert (
        record["method"] == method
        and record["task"] == PRETRAINING_METHODS[method][0]
        and record["architecture"] == "resnet-small"
    )
    assert (
        record["steps"] == 2
        and record["train"]["train_examples"] == 32
        and record["data"] == str(fashion_dir.resolve())
    )
    assert set(record["dev"]) == {DEV_METRIC[method]} and 0.0 <= record["dev"][DEV_METRIC[method]] <= 1.0
    weights = load_file(folder / "model.safetensors")  # the backbone only, under torchvision's names
    expected = ResNetModel(ResNetConfig.for_architecture("resnet-small")).state_dict()
    assert weights.keys() == expected.keys() and all(weights[n].shape == expected[n].shape for n in expected)

    model = AutoModelForImageClassification.from_pretrained(folder, num_labels=10)
    backbone = model.resnet.state_dict()
    assert all(torch.equal(backbone[n], weights[n]) for n in weights)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "ticketlab-resnet"


@pytest.mark.parametrize("method", list(PRETRAINING_METHODS))
def test_pretrain_again_trains_nothing(method, pretrained, fashion_dir, monkeypatch):
    out, folders = pretrained

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(PRETRAIN_MODULE, "train", no_training)
    assert pretrain(method, data=str(fashion_dir), out=out, **PRETRAIN) == folders[method]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "byol"}, "unknown pre-training method 'byol'; known: supervised, simclr, moco"),
        (
            {"architecture": "resnet-huge"},
            "unknown architecture 'resnet-huge'; known: resnet18, resnet50, resnet-small",
        ),
        ({"train_examples": 0}, "train_examples must be at least 1, got 0"),
        ({"epoch": 1}, "unknown option 'epoch'"),
        ({"data": "nowhere"}, "data not found: nowhere"),
    ],
)
def test_pretrain_refuses_bad_settings_before_writing(options, message, fashion_dir, tmp_path):
    settings = {"method": "simclr", "data": str(fashion_dir), **PRETRAIN, **options}
    with pytest.raises(TicketlabError, match=message) as error:
        pretrain(**settings, out=tmp_path / "out")
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()


def test_interrupted_moco_pretraining_resumes_bit_for_bit(fashion_dir, tmp_path, monkeypatch):
    options = dict(
        data=str(fashion_dir),
        architecture="resnet-small",
        train_examples=48,
        batch_size=16,
        epochs=2,
        checkpoint_every=2,
    )
    whole = pretrain("moco", out=tmp_path / "whole", **options)  # 6 steps, 3 per epoch

    real_train = PRETRAIN_MODULE.train
    with monkeypatch.context() as patch:
        patch.setattr(
            PRETRAIN_MODULE, "train", lambda *a, **k: real_train(*a, **{**k, "hooks": [*k["hooks"], StopAfter(4)]})
        )
        with pytest.raises(KeyboardInterrupt):
            pretrain("moco", out=tmp_path / "resumed", **options)
    (checkpoint,) = (tmp_path / "resumed").glob(".*.checkpoint")
    assert (
        torch.load(checkpoint, weights_only=True)["step"] == 2
    )  # step 4 died before its checkpoint: resume mid-epoch 1
    assert not (tmp_path / "resumed" / whole.name).exists()

    resumed = pretrain("moco", out=tmp_path / "resumed", **options)
    assert resumed.name == whole.name and not checkpoint.exists()
    first, second = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[n], second[n]) for n in first)
    a, b = pretrain_record(whole), pretrain_record(resumed)
    assert a["steps"] == b["steps"] == 6 and a["train_loss"] == b["train_loss"] and a["dev"] == b["dev"]


# --- a recipe with pre-training ---------------------------------------------------------------------------------------


def test_a_recipe_with_pretraining_writes_the_summary(fashion_dir, tmp_path):
    fake = {"data": str(fashion_dir)}
    train = dict(train_examples=32, batch_size=16, epochs=1)
    recipe = Recipe(
        name="tiny",
        model=None,
        tasks={"digits": dict(train)},
        prune={"sparsity": 0.2, **PRUNE},
        pretrain={
            "architecture": "resnet-small",
            "methods": {"supervised": {**fake, **train}, "moco": {**fake, **train}},
            "tickets": {**fake, **train},
        },
    )
    summary = run_experiment(recipe, out=tmp_path)
    assert summary == tmp_path / "summary.md" and summary.is_file() and (tmp_path / "summary.csv").is_file()
    for method in ("supervised", "moco"):
        assert (tmp_path / method / "report" / "report.md").is_file()
    table = pd.read_csv(tmp_path / "summary.csv")
    rows = {(row.method, row.task, round(row.sparsity, 2)): row for row in table.itertuples()}
    assert set(rows) == {
        ("supervised", "fashion-mnist", 0.2),
        ("supervised", "digits", 0.2),
        ("moco", "fashion-mnist-moco", 0.2),
        ("moco", "digits", 0.2),
    }
    for (method, task, _), row in rows.items():
        universal = pd.notna(row.universal_ticket)
        assert universal == (task == "digits"), (method, task)  # no universal ticket on the pre-training task itself
        assert pd.notna(row.dense) and pd.notna(row.imp_ticket)
        (run,) = [p for p in (tmp_path / method).iterdir() if p.name.startswith(f"{task}_")]
        store = RunStore(run)
        metric = "accuracy" if task != "fashion-mnist-moco" else "knn_accuracy"
        assert row.dense == pytest.approx(store.metrics(0)["dev"][metric])
        assert row.imp_ticket == pytest.approx(store.metrics(1)["dev"][metric])
        if universal:
            (branch,) = [b for b in store.branches() if b.startswith(f"transfer_{PRETRAINING_METHODS[method][0]}_")]
            assert row.universal_ticket == pytest.approx(store.branch(branch).metrics(1)["dev"]["accuracy"])
    text = summary.read_text()
    assert "## supervised" in text and "## moco" in text and "fashion-mnist-moco" in text
    for method in ("supervised", "moco"):
        (folder,) = (tmp_path / "pretrained").glob(f"{method}_resnet-small_*")
        assert pretrain_record(folder)["data"] == str(fashion_dir.resolve())


@pytest.mark.parametrize(
    "pretrain_text, message",
    [
        ("{methods: {bogus: {}}}", "unknown pre-training method 'bogus'; known: supervised, simclr, moco"),
        ("{methods: {simclr: {}}, size: 3}", "unknown pretrain setting 'size'; known: architecture, methods, tickets"),
        ("{architecture: resnet18}", "pretrain needs `methods`"),
    ],
)
def test_a_bad_pretrain_recipe_is_one_clear_error(pretrain_text, message, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(f"tasks: {{digits: {{}}}}\npretrain: {pretrain_text}\n")
    with pytest.raises(TicketlabError, match=message) as error:
        load_recipe(path)
    assert "\n" not in str(error.value)
    path.write_text("tasks: {digits: {}}\n")
    with pytest.raises(TicketlabError, match="needs `model`, or `pretrain`"):
        load_recipe(path)


# --- the CLI ----------------------------------------------------------------------------------------------------------


def test_cli_pretrain_refuses_an_unknown_method_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["pretrain", "--method", "bogus"])
    assert exit.value.code == 2
    err = one_line_error(capsys)
    assert "invalid choice: 'bogus'" in err


def test_cli_import_resnet_refuses_a_missing_file_or_existing_folder_in_one_line(tmp_path, capsys):
    assert (
        main(["import-resnet", str(tmp_path / "missing.pth"), "--arch", "resnet18", "--out", str(tmp_path / "model")])
        == 2
    )
    assert one_line_error(capsys) == f"ticketlab: error: no weight file at {tmp_path / 'missing.pth'}\n"
    assert not (tmp_path / "model").exists()
    assert main(["import-resnet", str(tmp_path / "missing.pth"), "--arch", "resnet18", "--out", str(tmp_path)]) == 2
    assert "exists already" in one_line_error(capsys)


def test_cli_tasks_lists_the_image_tasks(capsys):
    assert main(["tasks"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line and not line[0].isspace()}
    assert {"fashion-mnist", "mnist", "digits", "images", "fashion-mnist-simclr", "fashion-mnist-moco"} <= names


def test_cli_pretrain_finds_the_finished_model(pretrained, fashion_dir, monkeypatch, capsys):
    out, folders = pretrained
    monkeypatch.setattr(PRETRAIN_MODULE, "train", lambda *a, **k: pytest.fail("trained again"))
    argv = [
        "pretrain",
        "--method",
        "simclr",
        "--data",
        str(fashion_dir),
        "--out",
        str(out),
        "--train-examples",
        "32",
        "--batch-size",
        "16",
        "--epochs",
        "1",
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(folders["simclr"]) and lines[0].startswith("simclr pre-training, 2 steps in ")
    assert "dev knn_accuracy" in lines[0]


@pytest.mark.parametrize(
    "name, corrupt", [("model.safetensors", truncate), ("pretrain.json", flip), ("COMPLETE", truncate)]
)
def test_a_damaged_pretrained_folder_is_refused_as_a_model_and_made_again(
    name, corrupt, pretrained, fashion_dir, tmp_path, caplog
):
    out = shutil.copytree(pretrained[0], tmp_path / "out")
    folder = out / pretrained[1]["supervised"].name
    corrupt(folder / name)
    with pytest.raises(TicketlabError, match="is damaged") as error:
        resolve_config(str(folder), "digits", None, 0.2)
    assert "\n" not in str(error.value)
    with caplog.at_level(logging.WARNING, logger="ticketlab"):
        again = pretrain("supervised", data=str(fashion_dir), out=out, **PRETRAIN)
    (report,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "is damaged" in report and "pre-training it again" in report
    assert_same_outputs(again, pretrained[1]["supervised"])
