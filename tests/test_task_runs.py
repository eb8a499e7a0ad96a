"""Every task family through `ticketlab find` on files in the real formats; `ticketlab tasks`; bad data and metrics."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from helpers import TINY, run_cli, snapshot, write_glue, write_squad

import ticketlab
from ticketlab.config import TrainConfig
from ticketlab.lottery import resolve_config
from ticketlab.tasks import TASKS


def test_tasks_lists_every_task_with_its_metrics_and_files():
    done = run_cli("tasks")
    assert done.returncode == 0, done.stderr
    for name in (
        "cola",
        "sst2",
        "mrpc",
        "stsb",
        "qqp",
        "mnli",
        "qnli",
        "rte",
        "wnli",
        "squad",
        "mlm",
        "rotten-tomatoes",
    ):
        task = TASKS.get(name)
        assert f"{name}  " in done.stdout and task.files.split()[0] in done.stdout
        assert f"{task.metric}*" in done.stdout


def test_mnli_reports_matched_and_mismatched_and_a_chosen_deciding_metric(tiny_model_dir, tmp_path):
    write_glue(tmp_path / "glue_data", "mnli")
    out = tmp_path / "runs"
    done = run_cli(  # relative paths, as typed in tmp_path
        "find",
        "--task",
        "mnli",
        "--data",
        "glue_data",
        "--model",
        os.path.relpath(tiny_model_dir, tmp_path),
        *TINY,
        "--metric",
        "dev_mismatched/accuracy",
        "--out",
        "runs",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "decided by dev_mismatched accuracy" in done.stdout and "dev_matched accuracy" in done.stdout
    assert str(out) in "".join(done.stdout.split())  # the run's folder by its absolute path (the caption may wrap)
    metrics = json.loads(next(out.glob("*/round_01/metrics.json")).read_text())
    assert set(metrics) >= {"dev_matched", "dev_mismatched"} and 0 <= metrics["dev_mismatched"]["accuracy"] <= 1


def test_stsb_regression_and_squad_spans_run_through_imp(tiny_model_dir, tmp_path):
    write_glue(tmp_path / "glue_data", "stsb")
    stsb = ticketlab.find(
        str(tiny_model_dir), "stsb", data=str(tmp_path / "glue_data"), sparsity=0.1, out=tmp_path, epochs=1
    )
    assert set(stsb.rounds[1]["dev"]) == {"pearson", "spearmanr", "pearson_and_spearmanr"}
    squad = ticketlab.find(
        str(tiny_model_dir),
        "squad",
        data=str(write_squad(tmp_path / "squad")),
        sparsity=0.1,
        out=tmp_path,
        epochs=1,
        max_length=64,
    )
    assert all(0 <= squad.rounds[1]["dev"][m] <= 100 for m in ("exact_match", "f1"))


def test_bad_data_or_metric_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path):
    glue = tmp_path / "glue_data"
    write_glue(glue, "rte")
    (glue / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n", encoding="utf-8")
    out = tmp_path / "runs"
    cases = {
        "no data for a task that ships none": (["--task", "squad", "--max-length", "64"], "SQuAD does not ship"),
        "label outside the set": (["--task", "rte", "--data", glue], "dev.tsv:2: label 'maybe'"),
        "missing folder": (["--task", "mrpc", "--data", tmp_path / "nowhere"], "data not found"),
        "unknown metric": (["--task", "rte", "--data", glue, "--metric", "f1"], "has no metric 'f1'"),
        "unknown split": (
            ["--task", "mnli", "--data", glue, "--metric", "test/accuracy"],
            "no evaluation split 'test'",
        ),
    }
    for case, (args, message) in cases.items():
        done = run_cli("find", "--model", tiny_model_dir, *TINY, *args, "--out", out)
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0 and len(lines) == 1 and message in lines[0], (case, done.stderr)
    assert not out.exists() or snapshot(out) == {}


@pytest.mark.integration
@pytest.mark.slow
def test_the_embedded_wikipedia_is_plain_text_with_a_fixed_held_out_split():
    splits = TASKS.get("mlm").splits(None)
    assert (len(splits["train"]), len(splits["dev"])) == (95, 11)
    text = "\n".join(splits["train"] + splits["dev"])
    assert len(text) > 2_000_000
    assert not any(markup in text for markup in ("'''", "[[", "]]", "{{", "}}", "\n=="))


def test_bert_base_size_models_get_the_papers_recipe_and_small_ones_the_small_recipe(tmp_path):
    base, small = tmp_path / "bert-base-config", tmp_path / "small-config"
    for folder, width in ((base, 768), (small, 128)):  # 512 positions: SQuAD's 384 tokens fit
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": width}), encoding="utf-8")
    for name in ("mrpc", "squad", "mlm"):
        task = TASKS.get(name)
        assert resolve_config(str(base), name, None, 0.5).train == task.recipe
        assert resolve_config(str(small), name, None, 0.5, epochs=1).train == dataclasses.replace(
            task.small_recipe, epochs=1
        )
    assert TASKS.get("mrpc").recipe == TrainConfig(epochs=3, batch_size=32, learning_rate=2e-5, max_length=128)
    assert TASKS.get("squad").recipe == TrainConfig(epochs=2, batch_size=16, learning_rate=3e-5, max_length=384)


def test_a_recipes_max_length_beyond_the_models_positions_is_clamped_and_a_given_one_refused(tiny_model_dir, caplog):
    # the tiny BERT takes 128 positions; SQuAD's recipe asks for 384
    with caplog.at_level("WARNING", logger="ticketlab.lottery.settings"):
        config = resolve_config(str(tiny_model_dir), "squad", None, 0.5)
    assert config.train.max_length == 128
    (line,) = caplog.messages
    assert "max_length 384 is longer than the 128 positions" in line and line.endswith(": 128 it is")
    with pytest.raises(ticketlab.TicketlabError, match="max_length 256 is longer than the 128 positions"):
        resolve_config(str(tiny_model_dir), "squad", None, 0.5, max_length=256)
