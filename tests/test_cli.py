"""The `ticketlab` command in a subprocess (helpers.run_cli): `apply` end to end; its options against the settings
they set. Bad input is tested in-process, case by case, in test_bad_input.py."""

from dataclasses import fields

import pytest
import torch
from helpers import run_cli
from transformers import BertModel

import ticketlab
from ticketlab.cli.parser import build_parser
from ticketlab.config import PruneConfig, TrainConfig
from ticketlab.earlybert import EarlyBirdConfig
from ticketlab.masks import load_mask
from ticketlab.store import MARKER, damage


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
    assert (tmp_path / "pruned" / MARKER).is_file() and not damage(tmp_path / "pruned")  # sealed like an export


def test_options_are_the_settings_fields_with_their_defaults():
    """Every field of the run's settings has its option (but the two the command leaves at their defaults), left
    unset (the task's default applies); EarlyBERT's search options default to EarlyBirdConfig's."""
    find = vars(build_parser().parse_args(["find"]))
    assert {f.name for f in fields(TrainConfig)} - set(find) == {"max_grad_norm"}
    assert {f.name for f in fields(PruneConfig)} - set(find) == {"method"}
    assert all(find[f.name] is None for f in fields(PruneConfig) if f.name not in ("method", "sparsity"))
    search = vars(build_parser().parse_args(["earlybert"]))
    assert EarlyBirdConfig(**{f.name: search[f.name] for f in fields(EarlyBirdConfig)}) == EarlyBirdConfig()
