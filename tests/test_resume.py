"""A run killed mid-round and run again ends exactly where an uninterrupted run ends."""

import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

import ticketlab

ARGS = ["--sparsity", "0.2", "--train-examples", "160", "--batch-size", "4", "--epochs", "1", "--checkpoint-every", "1"]


def command(model_dir, out):
    return [sys.executable, "-m", "ticketlab", "find", "--model", str(model_dir), "--out", str(out), *ARGS]


def kill_mid_round(model_dir, out, round=1):
    """Start a run and SIGKILL it once `round` has a checkpoint but is not complete."""
    process = subprocess.Popen(command(model_dir, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            checkpoints = list(out.glob(f"*/round_{round:02d}/checkpoint.pt"))
            if checkpoints:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return checkpoints[0].parent
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
    raise AssertionError("the run ended before it could be killed mid-round")


def test_killed_run_resumes_to_the_same_masks_and_weights(tiny_model_dir, tmp_path):
    interrupted, uninterrupted = tmp_path / "interrupted", tmp_path / "uninterrupted"
    round_dir = kill_mid_round(tiny_model_dir, interrupted)
    assert not (round_dir / "COMPLETE").exists()
    assert (round_dir / "mask.safetensors").exists()
    for out in (interrupted, uninterrupted):
        done = subprocess.run(command(tiny_model_dir, out), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    (a,) = interrupted.iterdir()
    (b,) = uninterrupted.iterdir()
    assert a.name == b.name
    for round in range(3):
        mask_a, mask_b = ticketlab.load_ticket(a, round=round), ticketlab.load_ticket(b, round=round)
        assert all(torch.equal(mask_a[n], mask_b[n]) for n in mask_b), round
    weights_a, weights_b = load_file(str(a / "round_02" / "weights.safetensors")), load_file(str(b / "round_02" / "weights.safetensors"))
    assert all(torch.equal(weights_a[n], weights_b[n]) for n in weights_b)
    assert not list(a.rglob("checkpoint.pt")) and not list(a.rglob(".*tmp*"))
