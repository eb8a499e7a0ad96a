"""The `ticketlab` command in a subprocess: what several test modules run it with, and `apply` end to end.
Bad input is tested in-process, case by case, in test_bad_input.py."""

import hashlib
import os
import subprocess
import sys

import pytest
import torch
from transformers import BertModel

import ticketlab
from ticketlab.masks import load_mask

TINY = ["--train-examples", "32", "--batch-size", "16", "--epochs", "1", "--sparsity", "0.1"]


def run_cli(*args, cwd=None):
    """`ticketlab ARGS` in a subprocess, its tables printed 200 columns wide."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ticketlab", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def snapshot(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def existing_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("store")
    result = ticketlab.find(str(tiny_model_dir), sparsity=0.1, out=out, train_examples=32, batch_size=16, epochs=1)
    return out, result.path


def test_apply_writes_a_hugging_face_folder_with_the_zeros_baked_in(existing_run, tiny_model_dir, tmp_path):
    _, run_path = existing_run
    done = run_cli("apply", f"{run_path}:1", "--model", tiny_model_dir, "--out", tmp_path / "pruned")
    assert done.returncode == 0, done.stderr
    model = BertModel.from_pretrained(tmp_path / "pruned", dtype=torch.float32)
    mask, metadata = load_mask(tmp_path / "pruned" / "mask.safetensors")
    assert metadata["round"] == "1"
    weights = dict(model.named_parameters())
    assert all((weights[name][~m] == 0).all() for name, m in mask.items())
    assert sum(int((~m).sum()) for m in mask.values()) > 0
