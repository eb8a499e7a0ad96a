"""Experiment tracking (--log-with tensorboard), read back with TensorBoard's own reader: each unit's loss and learning
rate per step, its evaluation and the run's settings; a unit interrupted or killed and resumed reads each step once;
tracking changes no trained tensor and no run name; a tracker that is unknown or not installed is refused in one line
before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TIMEOUT_S, StopAfter, assert_same_outputs, kill_when, run_ok
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import api_pb2, metadata

import ticketlab
from ticketlab.cli import main
from ticketlab.earlybert import EarlyBirdConfig
from ticketlab.pretrain import pretrain_record
from ticketlab.store import RunStore

FAST = dict(train_examples=48, batch_size=8, epochs=1, learning_rate=1e-3, seed=3)  # 6 steps a unit
STEPS = 6
UNITS = ("round_00", "round_01", "round_02", "branches/random/round_01", "branches/random/round_02")


def read(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def curve(events: EventAccumulator, tag: str) -> dict[int, float]:
    """A scalar's value at each step, asserting each step is read once."""
    scalars = events.Scalars(tag)
    steps = [scalar.step for scalar in scalars]
    assert len(steps) == len(set(steps)), f"{tag}: a step read twice: {steps}"
    return {scalar.step: scalar.value for scalar in scalars}


def session(events: EventAccumulator) -> tuple[dict[str, object], int]:
    """The hyperparameters of a unit (TensorBoard's hparams session) and the status its session ended with."""
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}, end.status


def raw_steps(folder: Path, tag: str) -> list[int]:
    """Every step an event file of `folder` holds for `tag`, what an earlier attempt logged included."""
    return sorted(
        event.step
        for path in sorted(folder.glob("events.out.tfevents.*"))
        for event in EventFileLoader(str(path)).Load()
        if any(value.tag == tag for value in event.summary.value)
    )


@pytest.fixture(scope="module", autouse=True)
def threads(one_thread):
    """One torch thread, as the killed command's child process trains: the same float sums, bit for bit."""


@pytest.fixture(scope="module")
def tracked(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tracked")
    return ticketlab.find(
        str(tiny_model_dir), sparsity=0.2, out=out, controls=["random"], log_with=["tensorboard"], **FAST
    ).path


def test_every_unit_logs_its_loss_learning_rate_evaluation_and_settings(tracked):
    assert sorted(
        p.parent.relative_to(tracked / "logs").as_posix() for p in tracked.glob("logs/**/events.*")
    ) == sorted(UNITS)
    for unit in UNITS:
        record = json.loads((tracked / unit / "metrics.json").read_text())
        events = read(tracked / "logs" / unit)
        losses = curve(events, "train/loss")
        assert list(losses) == list(range(1, STEPS + 1)) and record["steps"] == STEPS
        assert sum(losses.values()) / STEPS == pytest.approx(record["train_loss"], rel=1e-6)
        rates = curve(events, "train/learning_rate")  # linear decay from the recipe's rate, no warmup
        assert rates == pytest.approx({step: 1e-3 * (1 - (step - 1) / STEPS) for step in range(1, STEPS + 1)})
        for split in ("dev", "test"):
            for name, value in record[split].items():
                assert curve(events, f"eval/{split}/{name}") == {STEPS: pytest.approx(value)}, (unit, split, name)
        hparams, status = session(events)
        assert hparams["run"] == tracked.name and hparams["unit"] == unit
        assert hparams["train.learning_rate"] == 1e-3 and hparams["prune.sparsity"] == 0.2
        assert hparams["task"] == "rotten-tomatoes" and hparams["model_hash"] == RunStore(tracked).config().model_hash
        assert status == api_pb2.STATUS_SUCCESS


def test_tracking_changes_no_trained_tensor_and_no_run_name(tracked, tiny_model_dir, tmp_path):
    plain = ticketlab.find(str(tiny_model_dir), sparsity=0.2, out=tmp_path, controls=["random"], **FAST).path
    assert plain.name == tracked.name  # the same settings hash: tracking is no setting of a run
    assert (plain / "config.json").read_bytes() == (tracked / "config.json").read_bytes()
    for unit in UNITS:
        assert_same_outputs(tracked / unit, plain / unit)  # masks, weights, metrics (times aside)
    files = {p.relative_to(tracked) for p in tracked.rglob("*") if p.is_file()}
    assert {p for p in files if p.parts[0] != "logs"} == {p.relative_to(plain) for p in plain.rglob("*") if p.is_file()}
    assert not (plain / "logs").exists()


def test_an_interrupted_unit_resumes_its_curves_without_repeating_a_step(tracked, tiny_model_dir, tmp_path):
    options = dict(sparsity=0.2, out=tmp_path, checkpoint_every=3, log_with=["tensorboard"], **FAST)
    with pytest.raises(KeyboardInterrupt):  # round 0 stops after step 5: checkpoint at 3, step 4 logged
        ticketlab.find(str(tiny_model_dir), hooks=[StopAfter(5)], **options)
    run = ticketlab.find(str(tiny_model_dir), **options).path
    folder = run / "logs" / "round_00"
    assert raw_steps(folder, "train/loss") == [1, 2, 3, 4, 4, 5, 6]  # step 4 logged by both attempts ...
    for unit in ("round_00", "round_01", "round_02"):  # ... read once, as an uninterrupted run logs it
        resumed, uninterrupted = read(run / "logs" / unit), read(tracked / "logs" / unit)
        for tag in ("train/loss", "train/learning_rate", "eval/dev/accuracy"):
            assert curve(resumed, tag) == curve(uninterrupted, tag), (unit, tag)


@pytest.mark.slow
def test_a_killed_run_resumes_its_curves_without_repeating_a_step(tracked, tiny_model_dir, tmp_path):
    out = tmp_path / "runs"
    args = ["find", "--model", tiny_model_dir, "--sparsity", 0.2, "--controls", "random", "--out", out]
    args += ["--train-examples", 48, "--batch-size", 8, "--epochs", 1, "--lr", 1e-3, "--seed", 3]
    args += ["--checkpoint-every", 2, "--log-with", "tensorboard"]
    for pattern in ("*/round_01/checkpoint.pt", "*/branches/random/round_02/checkpoint.pt"):
        kill_when(args, out, pattern, tmp_path / "killed.stderr")
    run_ok(args, tmp_path / "resumed.stderr")
    (run,) = out.iterdir()
    for unit in UNITS:
        resumed, uninterrupted = read(run / "logs" / unit), read(tracked / "logs" / unit)
        for tag in ("train/loss", "train/learning_rate", "eval/dev/accuracy", "eval/test/accuracy"):
            assert curve(resumed, tag) == curve(uninterrupted, tag), (unit, tag)


@pytest.mark.slow
def test_a_launch_logs_the_mean_loss_of_its_processes_from_the_main_process_alone(tiny_model_dir, reviews, tmp_path):
    out, log = tmp_path / "runs", tmp_path / "log"
    args = ["find", "--model", tiny_model_dir, "--data", reviews, "--sparsity", 0.1, "--out", out]
    args += ["--train-examples", 48, "--batch-size", 8, "--epochs", 1, "--lr", 1e-3, "--log-with", "tensorboard"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    with open(log, "wb") as output:
        launched = subprocess.run(
            [*torchrun, "-m", "ticketlab", *map(str, args)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=TIMEOUT_S,
        )
    assert launched.returncode == 0, log.read_text()[-3000:]
    (run,) = out.iterdir()
    for unit in ("round_00", "round_01"):
        record = json.loads((run / unit / "metrics.json").read_text())
        assert record["cost"]["processes"] == 2
        assert len(list((run / "logs" / unit).iterdir())) == 1  # one event file: the main process's
        losses = curve(read(run / "logs" / unit), "train/loss")
        assert list(losses) == list(range(1, STEPS + 1))
        assert sum(losses.values()) / STEPS == pytest.approx(record["train_loss"], rel=1e-6)


def test_searches_and_pretraining_log_their_steps(tiny_model_dir, fashion_dir, tmp_path):
    gmp = ticketlab.find(
        str(tiny_model_dir), sparsity=0.2, out=tmp_path, finder="gmp", log_with=["tensorboard"], **FAST
    ).path
    early = ticketlab.earlybert(
        str(tiny_model_dir),
        out=tmp_path,
        settings=EarlyBirdConfig(draw_every=1, window=3, threshold=0.2),
        log_with=["tensorboard"],
        **FAST,
    ).run
    searches = [gmp / "logs" / "search" / "round_00", *early.glob("logs/branches/earlybert-*/search")]
    assert len(searches) == 2
    for folder in searches:  # trained, not evaluated
        events = read(folder)
        assert list(curve(events, "train/loss")) == list(range(1, len(curve(events, "train/loss")) + 1))
        assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("eval/")]
    model = ticketlab.pretrain(
        "supervised",
        data=str(fashion_dir),
        out=tmp_path / "pretrained",
        epochs=1,
        batch_size=16,
        log_with=["tensorboard"],
    )
    events, record = read(tmp_path / "pretrained" / "logs" / model.name), pretrain_record(model)
    assert list(curve(events, "train/loss")) == list(range(1, record["steps"] + 1))
    assert curve(events, "eval/dev/accuracy") == {record["steps"]: pytest.approx(record["dev"]["accuracy"])}
    hparams, status = session(events)
    assert hparams["unit"] == model.name and hparams["method"] == "supervised" and status == api_pb2.STATUS_SUCCESS


VERBS = {
    "find": ["find"],
    "transfer": ["transfer", "--ticket", "runs/x:1", "--task", "mlm"],
    "grid": ["grid", "--tasks", "mlm,rotten-tomatoes", "--sparsity", "0.5"],
    "earlybert": ["earlybert"],
    "pretrain": ["pretrain"],
    "experiment": ["experiment", "--preset", "small"],
}


@pytest.mark.parametrize("verb", VERBS)
def test_an_unknown_or_missing_tracker_is_refused_in_one_line_before_anything_is_written(
    verb, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main([*VERBS[verb], "--log-with", "tensorboard,wandb"]) == 2
    assert capsys.readouterr().err == "ticketlab: error: unknown tracker 'wandb' for --log-with; known: tensorboard\n"
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # how Python sees a package that is not installed
    assert main([*VERBS[verb], "--log-with", "tensorboard"]) == 2
    assert capsys.readouterr().err == (
        "ticketlab: error: --log-with tensorboard needs the tensorboard package, which is not installed: "
        "pip install 'ticketlab[track]'\n"
    )
    assert list(tmp_path.iterdir()) == []
