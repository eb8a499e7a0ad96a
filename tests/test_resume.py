"""Every workflow killed (SIGKILL) at several points and run again ends exactly where an uninterrupted run ends: the
same files, tensors and metrics. A damaged checkpoint is discarded and a loss that turns nan stops the unit."""

import json
import logging
import re
import shutil

import numpy as np
import pytest
import torch
from helpers import MLM_WORDS, assert_same_outputs, kill_when, resume_after_kills, run, run_ok

from ticketlab.train.checkpoint import usable_checkpoint

pytestmark = pytest.mark.slow  # each test runs a workflow in child processes, kills and reruns it

FAST = ["--checkpoint-every", "1", "--epochs", "1", "--batch-size", "4", "--train-examples", "32"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """30 documents of 40 words, one per line: MLM's --data (27 train, 3 held out)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(" ".join(rng.choice(MLM_WORDS, 40)) for _ in range(30)), encoding="utf-8")
    return path


def assert_resumes_exactly(args, patterns, tmp_path):
    """`ticketlab ARGS`, killed once each of `patterns` appears and run again, ends as an uninterrupted run."""
    resumed, whole = tmp_path / "resumed", tmp_path / "whole"
    run_ok([*args, "--out", whole], tmp_path / "whole.stderr")
    resume_after_kills([*args, "--out", resumed], resumed, patterns)
    assert_same_outputs(resumed, whole)
    return resumed, whole


def assert_ledger(record, examples):
    """A unit's cost ledger (the same in a resumed run: assert_same_outputs compares all but its times): `examples`
    seen, and 3 passes of the probe batch's FLOPs a step."""
    cost = record["cost"]
    assert cost["steps"] == record["steps"] and cost["examples"] == examples
    assert cost["train_flops"] == 3 * cost["forward_flops"] * cost["steps"] > 0


def test_find_resumes_exactly_when_killed_mid_round_after_a_round_and_mid_control(tiny_model_dir, reviews, tmp_path):
    args = ["find", "--model", tiny_model_dir, "--data", reviews, "--sparsity", "0.1", "--controls", "random", *FAST]
    kills = ["*/round_01/checkpoint.pt", "*/round_01/COMPLETE", "*/branches/random/round_01/checkpoint.pt"]
    resumed, _ = assert_resumes_exactly(args, kills, tmp_path)
    for unit in ("round_01", "branches/random/round_01"):
        assert_ledger(json.loads(next(resumed.glob(f"*/{unit}/metrics.json")).read_text()), examples=32)


def test_a_gmp_run_resumes_exactly_with_the_same_masks(tiny_model_dir, reviews, tmp_path):
    args = ["find", "--model", tiny_model_dir, "--data", reviews, "--sparsity", "0.2", "--method", "gmp", *FAST]
    args += ["--gmp-end", "1", "--gmp-prunings", "4"]  # prunes at steps 2, 4, 6, 8 of 8
    kills = ["*/search/round_00/checkpoint.pt", "*/search/round_00/COMPLETE", "*/round_02/checkpoint.pt"]
    resumed, _ = assert_resumes_exactly(args, kills, tmp_path)
    assert len(list(resumed.glob("*/search/round_00/mask_0*.safetensors"))) == 2


def test_early_bird_resumes_exactly_where_its_draws_settle(tiny_model_dir, reviews, tmp_path):
    args = ["find", "--model", tiny_model_dir, "--data", reviews, "--sparsity", "0.2", "--method", "early-bird", *FAST]
    args += ["--draw-every", "2", "--settle-window", "2", "--settle-threshold", "0.5", "--final-only"]
    resumed, _ = assert_resumes_exactly(args, ["*/round_00/checkpoint.pt", "*/round_01/checkpoint.pt"], tmp_path)
    searched = json.loads(next(resumed.glob("*/round_01/metrics.json")).read_text())
    assert searched["search_only"] and searched["steps"] == searched["draw"]["step"] < 8


@pytest.mark.parametrize("method", ["one-shot", "wanda"])
def test_a_one_shot_method_resumes_exactly(method, tiny_model_dir, reviews, tmp_path):
    """One-shot and Wanda prune every level from the dense round: killed in it, and in a ticket's round."""
    args = ["find", "--model", tiny_model_dir, "--data", reviews, "--sparsity", "0.2", "--method", method, *FAST]
    args += ["--calibration-examples", "8"] if method == "wanda" else []
    assert_resumes_exactly(args, ["*/round_00/checkpoint.pt", "*/round_02/checkpoint.pt"], tmp_path)


def test_a_distilled_find_resumes_exactly_when_killed_in_its_teacher_and_its_tickets(tiny_model_dir, reviews, tmp_path):
    args = ["find", "--model", tiny_model_dir, "--data", reviews, "--sparsity", "0.2", "--distill", *FAST]
    kills = ["*/teacher/round_00/outputs.safetensors", "*/round_01/checkpoint.pt", "*/round_02/checkpoint.pt"]
    resumed, _ = assert_resumes_exactly(args, kills, tmp_path)
    assert next(resumed.glob("*/teacher/round_00/COMPLETE")).is_file()


def test_a_bf16_find_resumes_exactly(tiny_model_dir, reviews, tmp_path):
    args = ["find", "--model", tiny_model_dir, "--data", reviews, "--sparsity", "0.1", "--precision", "bf16", *FAST]
    assert_resumes_exactly(args, ["*/round_00/checkpoint.pt", "*/round_01/checkpoint.pt"], tmp_path)


def test_a_distilled_mlm_find_resumes_exactly_with_its_teacher_beside_it(tiny_model_dir, corpus, tmp_path):
    args = ["find", "--model", tiny_model_dir, "--task", "mlm", "--data", corpus, "--max-length", "32"]
    args += ["--sparsity", "0.1", "--distill", *FAST]
    resumed, _ = assert_resumes_exactly(args, ["*/round_01/checkpoint.pt"], tmp_path)
    record = json.loads(next(resumed.glob("*/round_01/metrics.json")).read_text())
    teacher_flops, steps = record["cost"]["teacher_flops"], record["steps"]
    assert teacher_flops > 0 and teacher_flops % steps == 0  # a forward pass of the dense model per step
    assert not list(resumed.glob("*/teacher"))  # MLM's teacher runs beside the ticket: no stored outputs


def test_find_on_mlm_resumes_exactly_with_the_same_dynamic_masks(tiny_model_dir, corpus, tmp_path):
    args = [
        "find",
        "--model",
        tiny_model_dir,
        "--task",
        "mlm",
        "--data",
        corpus,
        "--max-length",
        "32",
        "--sparsity",
        "0.1",
        *FAST,
    ]
    assert_resumes_exactly(args, ["*/round_00/checkpoint.pt", "*/round_01/checkpoint.pt"], tmp_path)


def test_transfer_to_mlm_resumes_exactly(tiny_model_dir, reviews, corpus, tmp_path):
    find = [
        "find",
        "--model",
        tiny_model_dir,
        "--data",
        reviews,
        "--sparsity",
        "0.1",
        *FAST,
        "--out",
        tmp_path / "source",
    ]
    run_ok(find, tmp_path / "source.stderr")
    (source,) = (tmp_path / "source").glob("rotten-tomatoes_*")
    args = ["transfer", "--ticket", f"{source}:1", "--task", "mlm", "--data", corpus, "--max-length", "32", *FAST]
    assert_resumes_exactly(args, ["*/round_00/checkpoint.pt", "*/branches/transfer_*/round_01/checkpoint.pt"], tmp_path)


def test_earlybert_resumes_exactly_and_draws_the_same_random_ticket_again(tiny_model_dir, reviews, tmp_path):
    args = [
        "earlybert",
        "--model",
        tiny_model_dir,
        "--data",
        reviews,
        "--draw-every",
        "1",
        "--window",
        "2",
        "--threshold",
        "0.2",
        *FAST,
    ]
    kills = [
        "*/branches/earlybert-*/search/search.pt",
        "*/branches/earlybert-[0-9a-f]*/round_00/checkpoint.pt",
        "*/branches/earlybert-random-*/round_00/checkpoint.pt",
    ]
    resumed, whole = assert_resumes_exactly(args, kills, tmp_path)
    (search,) = resumed.glob("*/branches/earlybert-*/search/search.json")
    search = json.loads(search.read_text())
    assert_ledger(search, examples=min(32, 4 * search["steps"]))
    # the random ticket drawn again, now from the stored early-bird ticket (its keys read back sorted)
    (random,) = resumed.glob("*/branches/earlybert-random-*")
    shutil.rmtree(random)
    run_ok([*args, "--out", resumed], tmp_path / "again.stderr")
    assert_same_outputs(resumed, whole)


def test_pretraining_resumes_exactly_and_a_rerun_clears_its_leftovers(fashion_dir, tmp_path):
    args = [
        "pretrain",
        "--method",
        "moco",
        "--data",
        fashion_dir,
        "--train-examples",
        "48",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--checkpoint-every",
        "1",
    ]
    resumed, whole = assert_resumes_exactly(args, [".*.checkpoint"], tmp_path)
    (model,) = resumed.glob("moco_*")
    assert_ledger(json.loads((model / "pretrain.json").read_text()), examples=2 * 48)
    checkpoint = f".{model.name}.checkpoint"
    for leftover in (checkpoint, f".{checkpoint}.tmp123", f".{model.name}.tmp123"):  # what kills during saves leave
        (resumed / leftover).write_bytes(b"partial")
    run_ok([*args, "--out", resumed], tmp_path / "again.stderr")
    assert_same_outputs(resumed, whole)


def test_grid_resumes_exactly(tiny_model_dir, reviews, corpus, tmp_path):
    args = [
        "grid",
        "--tasks",
        "mlm,rotten-tomatoes",
        "--model",
        tiny_model_dir,
        "--data",
        f"mlm={corpus}",
        "--data",
        f"rotten-tomatoes={reviews}",
        "--sparsity",
        "0.1",
        "--max-length",
        "32",
        *FAST,
    ]
    kills = [  # in its branches (a lottery run killed mid-round: the find tests, MLM's included)
        "rotten-tomatoes_*/branches/random/round_01/checkpoint.pt",
        "mlm_*/branches/transfer_*/round_01/checkpoint.pt",
    ]
    assert_resumes_exactly(args, kills, tmp_path)


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "incomplete"])
def test_a_damaged_checkpoint_is_reported_in_one_line_and_discarded(damage, tmp_path, caplog):
    path = tmp_path / "checkpoint.pt"
    torch.save({"step": 3, "model": {"w": torch.ones(64)}}, path)  # a loadable file, but not a whole checkpoint
    content = {"empty": b"", "garbage": b"not a checkpoint at all", "truncated": path.read_bytes()[:100]}
    if damage in content:
        path.write_bytes(content[damage])
    with caplog.at_level(logging.WARNING, logger="ticketlab"):
        assert not usable_checkpoint(path)
    assert not path.exists()
    (record,) = caplog.records
    assert record.getMessage().startswith(f"{path} is damaged") and "\n" not in record.getMessage()


def test_a_run_with_a_damaged_checkpoint_restarts_that_round_and_ends_exactly(tiny_model_dir, reviews, tmp_path):
    args = ["find", "--model", tiny_model_dir, "--data", reviews, "--sparsity", "0.1", *FAST]
    resumed, whole = tmp_path / "resumed", tmp_path / "whole"
    run_ok([*args, "--out", whole], tmp_path / "whole.stderr")
    checkpoint = kill_when([*args, "--out", resumed], resumed, "*/round_01/checkpoint.pt", tmp_path / "killed.stderr")
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # as a crash mid-write on a file system without rename might
    run_ok([*args, "--out", resumed], tmp_path / "resumed.stderr")
    assert "round_01/checkpoint.pt is damaged" in (tmp_path / "resumed.stderr").read_text()
    assert_same_outputs(resumed, whole)


def test_a_loss_that_turns_nan_stops_the_unit_in_one_line_and_saves_nothing_from_it(tiny_model_dir, reviews, tmp_path):
    out, stderr = tmp_path / "runs", tmp_path / "stderr"
    args = [
        "find",
        "--model",
        tiny_model_dir,
        "--data",
        reviews,
        "--sparsity",
        "0.1",
        "--lr",
        "1e30",
        *FAST,
        "--out",
        out,
    ]
    assert run(args, stderr) == 2
    last = stderr.read_text().strip().splitlines()[-1]
    assert re.fullmatch(
        r"ticketlab: error: the training loss is (nan|inf) at step \d+ of round 0 · sparsity 0\.0%; lower .*", last
    )
    assert "Traceback" not in stderr.read_text()
    (run_dir,) = out.iterdir()
    assert not (run_dir / "round_00" / "COMPLETE").exists() and not (run_dir / "round_01").exists()
    kept = torch.load(run_dir / "round_00" / "checkpoint.pt", weights_only=True)  # the last good one
    assert all(torch.isfinite(w).all() for w in kept["model"].values())
