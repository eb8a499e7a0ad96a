"""Data-parallel runs: `ticketlab` launched on 2 CPU processes by torchrun (gloo) trains one run: one batch split
between them, each example with the data randomness one process gives it, the same mask on every process, every
evaluation example counted once, the store and the tables written by the main process only (a damaged round reported
once, a dense round copied by plan), pre-training, and a launch killed (SIGKILL to the whole job) and launched again
ends exactly as an uninterrupted launch."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from distributed_probe import noisy_training
from helpers import TIMEOUT_S, assert_same_outputs

pytestmark = pytest.mark.slow  # torchrun launches of two processes

RUN = ["find", "--train-examples", "64", "--batch-size", "8", "--epochs", "1", "--sparsity", "0.1"]
RUN += ["--controls", "random", "--checkpoint-every", "1"]


def launch(args, log: Path) -> subprocess.Popen:
    """torchrun --standalone --nproc_per_node 2 ARGS, its output (every process's) into `log`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)]
    with open(log, "ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)


def kill_job(job: subprocess.Popen) -> None:
    """SIGKILL to torchrun and every process it started (each of its workers leads a session of its own)."""
    processes = [*psutil.Process(job.pid).children(recursive=True), psutil.Process(job.pid)]
    for process in processes:
        process.kill()
    psutil.wait_procs(processes, timeout=TIMEOUT_S)
    job.wait()


def finish(job: subprocess.Popen, log: Path) -> None:
    assert job.wait(TIMEOUT_S) == 0, log.read_text()[-3000:]


def test_a_launch_splits_each_batch_as_one_process_draws_it_counts_every_example_once_and_refuses_diverging_masks(
    fashion_dir, tmp_path
):
    out, log, pretrained = tmp_path / "seen.json", tmp_path / "log", tmp_path / "pretrained"
    finish(launch([Path(__file__).with_name("distributed_probe.py"), out, fashion_dir, pretrained], log), log)
    seen = json.loads(out.read_text())
    assert seen["processes"] == 2
    assert seen["y"] == [2.0 * i for i in range(13)]
    assert seen["refused"] == "another mask on process 1: process 1 drew another mask than process 0"
    drawn, weights = noisy_training()  # in this one process
    assert seen["drawn"] == sorted(drawn)  # each example's noise, also in the short last batch both processes train on
    assert seen["weights"] == pytest.approx(weights, rel=1e-5)
    folder, again = map(Path, seen["pretrained"])
    assert again == folder and {p.name for p in folder.iterdir()} == {
        "config.json",
        "model.safetensors",
        "pretrain.json",
        "COMPLETE",
    }
    assert json.loads((folder / "pretrain.json").read_text())["cost"]["processes"] == 2
    assert not list(pretrained.glob(".*checkpoint*"))


def test_a_killed_launch_resumes_exactly_and_only_the_main_process_writes_and_prints(tiny_model_dir, reviews, tmp_path):
    args = ["-m", "ticketlab", *RUN, "--model", tiny_model_dir, "--data", reviews]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    finish(launch([*args, "--out", whole], tmp_path / "whole.log"), tmp_path / "whole.log")
    printed = (tmp_path / "whole.log").read_text()
    assert printed.count("IMP on rotten-tomatoes") == 1 and printed.count("Highest matching sparsity") == 1
    record = json.loads(next(whole.glob("*/round_01/metrics.json")).read_text())
    assert (record["cost"]["processes"], record["cost"]["global_batch"], record["cost"]["batch_per_process"]) == (
        2,
        8,
        4,
    )
    assert record["steps"] == 8 and record["cost"]["examples"] == 64

    log, (run,) = tmp_path / "resumed.log", [path.parent for path in whole.glob("*/config.json")]
    shutil.copytree(run, resumed / "sibling")  # the same dense model beside the run: its round 0 is copied
    job = launch([*args, "--out", resumed], log)  # killed mid-round: each process resumes its own random state
    deadline = time.monotonic() + TIMEOUT_S
    while not list(resumed.glob("*/round_01/checkpoint.pt")) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    kill_job(job)
    assert list(resumed.glob("*/round_01/checkpoint.pt")), log.read_text()[-3000:]
    with open(resumed / run.name / "round_00" / "metrics.json", "a") as metrics:
        metrics.write(" ")  # damaged: the main process reports it, reopens it, and the plan copies it again
    finish(launch([*args, "--out", resumed], log), log)
    printed = log.read_text()
    assert printed.count("is damaged") == 1 and printed.count("the dense model sibling trained, copied") == 2
    shutil.rmtree(resumed / "sibling")
    assert_same_outputs(resumed, whole)
