"""Bad input: one line on stderr, a non-zero exit, no traceback, and nothing damaged."""

import hashlib
import os
import subprocess
import sys

import pytest
import torch
from transformers import BertConfig, BertModel

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


def bad_mask_files(tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00\x01 this is no mask")
    other = tmp_path / "other-model"
    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(other)
    return corrupt, other


def test_bad_inputs_give_one_line_errors_and_leave_the_store_alone(existing_run, tiny_model_dir, tmp_path):
    out, run_path = existing_run
    corrupt, other_model = bad_mask_files(tmp_path)
    mask_file = run_path / "round_01" / "mask.safetensors"
    before = snapshot(out)
    cases = {
        "unknown model": ["find", "--model", "bert-huge", "--out", out],
        "not a model folder": ["find", "--model", tmp_path, "--out", out],
        "unknown task": ["find", "--model", tiny_model_dir, "--task", "nope", "--out", out],
        "missing data": ["find", "--model", tiny_model_dir, "--data", tmp_path / "missing.csv", "--out", out],
        "sparsity zero": ["find", "--sparsity", "0", "--out", out],
        "sparsity one": ["find", "--sparsity", "1", "--out", out],
        "sparsity text": ["find", "--sparsity", "lots", "--out", out],
        "negative epochs": ["find", "--model", tiny_model_dir, "--epochs", "-1", "--out", out],
        "no checkpoints": ["find", "--model", tiny_model_dir, "--checkpoint-every", "0", "--out", out],
        "rewind past the round": ["find", "--model", tiny_model_dir, *TINY, "--rewind-step", "999", "--out", out],
        "corrupt mask": ["apply", corrupt, "--model", tiny_model_dir, "--out", tmp_path / "x"],
        "mask of another model": ["apply", mask_file, "--model", other_model, "--out", tmp_path / "y"],
        "missing ticket": ["apply", tmp_path / "nothing.safetensors", "--model", tiny_model_dir, "--out", tmp_path / "z"],
        "existing output": ["apply", mask_file, "--model", tiny_model_dir, "--out", out],
    }
    for case, args in cases.items():
        done = run_cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0, case
        assert len(lines) == 1 and lines[0].startswith("ticketlab"), (case, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout, case
    assert snapshot(out) == before
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


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
