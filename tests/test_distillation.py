"""Distillation of tickets from the dense round: the loss of each kind against a hand computation, the batches that
carry the teacher's outputs, the teacher unit (computed once, reused, damage redone), and the precision setting."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from conftest import tiny_bert_config
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertForMaskedLM
from transformers.modeling_outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput

import ticketlab
from ticketlab import config as config_module
from ticketlab.assets import asset_path
from ticketlab.config import DistillConfig, resolve_precision
from ticketlab.distillation import DistilledForward, attach_teacher, collate_with_teacher, distillation_loss
from ticketlab.lottery import resolve_config, run_controls, run_lottery, teacher
from ticketlab.masks import load_mask
from ticketlab.models import layer_stack_weights, load_pretrained, prunable_weights
from ticketlab.pruning import magnitude_prune, scope_rankings
from ticketlab.report.cost import unit_costs
from ticketlab.report.earlybert import earlybert_groups
from ticketlab.report.frontier import frontier_table, timed_exports
from ticketlab.report.results import collect
from ticketlab.store import RunStore, file_digest
from ticketlab.tasks import TASKS
from ticketlab.train.batches import Draws, seeded_generator

QUICK = dict(epochs=1, batch_size=8, train_examples=32)


def softmax(x: np.ndarray, temperature: float) -> np.ndarray:
    e = np.exp(x / temperature - (x / temperature).max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def hand_kl(student: np.ndarray, teacher: np.ndarray, temperature: float) -> float:
    """T² · mean over rows of Σ p_teacher (log p_teacher - log p_student), written out."""
    p, q = softmax(teacher, temperature), softmax(student, temperature)
    return float((p * (np.log(p) - np.log(q))).sum(-1).mean() * temperature**2)


def test_classification_logits_against_a_hand_computation():
    rng = np.random.default_rng(0)
    student, taught = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) * 3
    output = SequenceClassifierOutput(logits=torch.tensor(student))
    loss = distillation_loss("logits", output, {"logits": torch.tensor(taught)}, {}, 2.0)
    assert loss.item() == pytest.approx(hand_kl(student, taught, 2.0), rel=1e-5)
    same = distillation_loss("logits", output, {"logits": torch.tensor(student)}, {}, 2.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_a_regression_score_is_distilled_by_mean_squared_error():
    output = SequenceClassifierOutput(logits=torch.tensor([[1.0], [2.0], [4.0]]))
    loss = distillation_loss("score", output, {"logits": torch.tensor([[1.5], [2.0], [1.0]])}, {}, 5.0)
    assert loss.item() == pytest.approx((0.25 + 0 + 9) / 3)  # the temperature plays no part


def test_spans_leave_padding_out_against_a_hand_computation():
    rng = np.random.default_rng(1)
    lengths = [6, 4]
    student = {name: rng.normal(size=(2, 6)) for name in ("start_logits", "end_logits")}
    taught = {name: rng.normal(size=(2, 6)) * 2 for name in student}
    attention = torch.tensor([[1 if i < n else 0 for i in range(6)] for n in lengths])
    for name in taught:  # what padding holds must not matter
        taught[name][1, 4:] = 1e3
        student[name][1, 4:] = -1e3
    output = QuestionAnsweringModelOutput(**{name: torch.tensor(value) for name, value in student.items()})
    teacher_rows = {name: torch.tensor(value) for name, value in taught.items()}
    loss = distillation_loss("spans", output, teacher_rows, {"attention_mask": attention}, 2.0)
    expected = np.mean(
        [
            np.mean([hand_kl(student[name][i, :n], taught[name][i, :n], 2.0) for i, n in enumerate(lengths)])
            for name in student
        ]
    )
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_the_teacher_rides_with_its_features_and_spans_pad_to_the_batch():
    features = [{"input_ids": [1, 2, 3], "labels": 0}, {"input_ids": [4, 5], "labels": 1}]
    outputs = {"start_logits": torch.arange(8.0).reshape(2, 4), "end_logits": -torch.arange(8.0).reshape(2, 4)}
    carried = attach_teacher(features, "spans", outputs)
    assert carried[1]["teacher"]["start_logits"].tolist() == [4.0, 5.0]  # cut to the feature's tokens
    assert "teacher" not in features[0]  # copies

    def pad(rows):
        width = max(len(row["input_ids"]) for row in rows)
        return {"input_ids": torch.tensor([row["input_ids"] + [0] * (width - len(row["input_ids"])) for row in rows])}

    batch = collate_with_teacher(pad, "spans")(carried)
    assert batch["teacher"]["start_logits"].tolist() == [[0.0, 1.0, 2.0], [4.0, 5.0, 0.0]]
    logits = attach_teacher(features, "logits", {"logits": torch.tensor([[1.0, 2.0], [3.0, 4.0]])})
    assert collate_with_teacher(pad, "logits")(logits)["teacher"]["logits"].shape == (2, 2)


def test_the_distilled_loss_mixes_task_and_teacher_by_alpha():
    model = torch.nn.Linear(4, 3)
    x, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    taught = torch.randn(6, 3)

    def forward(model, batch, draws=None):
        logits = model(batch["x"])
        return SequenceClassifierOutput(loss=torch.nn.functional.cross_entropy(logits, batch["labels"]), logits=logits)

    distilled = DistilledForward(forward, "logits", DistillConfig(alpha=0.25, temperature=3.0))
    loss = distilled(model, {"x": x, "labels": labels, "teacher": {"logits": taught}}).loss
    logits = model(x).detach().numpy()
    task = torch.nn.functional.cross_entropy(model(x), labels).item()
    assert loss.item() == pytest.approx(0.75 * task + 0.25 * hand_kl(logits, taught.numpy(), 3.0), rel=1e-5)
    model.eval()  # evaluation: the task's forward alone, the teacher's outputs ignored
    assert distilled(model, {"x": x, "labels": labels, "teacher": {"logits": taught}}).loss.item() == pytest.approx(
        task
    )


def test_mlm_teacher_sees_the_students_masks():
    """MLM draws its masks in the forward: the teacher, run beside the student, must mask the same positions."""
    tokenizer = AutoTokenizer.from_pretrained(asset_path("splade-tiny"))
    torch.manual_seed(0)
    config = tiny_bert_config(
        vocab_size=tokenizer.vocab_size, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )  # no dropout: the student's forward is drawn once more below
    student, dense = BertForMaskedLM(config), BertForMaskedLM(config).eval()
    task = TASKS.get("mlm")
    features = task.encode(tokenizer, [" ".join(["a quick brown fox jumps over the lazy dog"] * 8)], 12)
    batch = task.collator(tokenizer, train=True)(features[:4])
    distilled = DistilledForward(task.forward, "masked-tokens", DistillConfig(alpha=1.0, temperature=2.0), dense)
    loss = distilled(student, batch, Draws(seeded_generator("mlm", 1))).loss
    mine = task.forward(student, batch, Draws(seeded_generator("mlm", 1)))
    with torch.no_grad():
        theirs = task.forward(dense, batch, Draws(seeded_generator("mlm", 1)))
    expected = hand_kl(mine.logits.detach().numpy(), theirs.logits.numpy(), 2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    other = task.forward(dense, batch, Draws(seeded_generator("mlm", 2)))  # other masks: another loss
    assert other.logits.shape != theirs.logits.shape or not torch.equal(other.logits, theirs.logits)


def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(config_module, "native_bf16", lambda: False)
    assert resolve_precision("auto") == "fp32"
    monkeypatch.setattr(config_module, "native_bf16", lambda: True)
    assert resolve_precision("auto") == "bf16"
    assert resolve_precision("fp32") == "fp32" and resolve_precision(None) is None


def test_precision_and_distillation_name_a_new_run_and_leave_old_names_alone(tiny_model_dir, reviews):
    plain = resolve_config(str(tiny_model_dir), "rotten-tomatoes", str(reviews), 0.2)
    assert "precision" not in plain.to_dict()["train"] and "distill" not in plain.to_dict()
    bf16 = resolve_config(str(tiny_model_dir), "rotten-tomatoes", str(reviews), 0.2, precision="bf16")
    distilled = resolve_config(str(tiny_model_dir), "rotten-tomatoes", str(reviews), 0.2, distill=True)
    assert len({plain.name(), bf16.name(), distilled.name()}) == 3
    assert "_bf16-linear" in bf16.name() and "_distill-linear" in distilled.name()
    assert distilled.distill == DistillConfig(alpha=0.9, temperature=2.0)
    assert type(plain).from_dict(distilled.to_dict()) == distilled


def test_masks_are_ranked_from_fp32_weights_under_bf16(tiny_model_dir, reviews, tmp_path):
    result = ticketlab.find(
        str(tiny_model_dir),
        "rotten-tomatoes",
        data=str(reviews),
        sparsity=0.2,
        out=tmp_path,
        precision="bf16",
        save_weights=True,
        **QUICK,
    )

    store = RunStore(result.path)
    trained = load_file(str(store.weights_path(1)))
    assert all(value.dtype == torch.float32 for value in trained.values())
    model = load_pretrained(tiny_model_dir, TASKS.get("rotten-tomatoes").auto_class, 0, num_labels=2)
    model.load_state_dict(trained, strict=False)
    weights = prunable_weights(model)
    previous = load_mask(store.mask_path(1))[0]
    rankings = scope_rankings("layers", list(weights), layer_stack_weights(model))  # the run's default scope
    expected = magnitude_prune(weights, previous, 0.2, rankings)
    assert result.rounds[1]["cost"]["steps"] == 4 and load_mask(store.mask_path(2))[0].keys() == expected.keys()
    assert all(torch.equal(load_mask(store.mask_path(2))[0][n], expected[n]) for n in expected)


def test_the_teacher_is_computed_once_reused_and_redone_when_damaged(
    tiny_model_dir, reviews, tmp_path, monkeypatch, caplog
):
    config = resolve_config(str(tiny_model_dir), "rotten-tomatoes", str(reviews), 0.2, distill=True, **QUICK)
    computed = []
    original = teacher._compute
    monkeypatch.setattr(teacher, "_compute", lambda context: computed.append(1) or original(context))
    run_lottery(config, tmp_path, last_round=1)
    assert computed == [1]
    store = RunStore(tmp_path / config.name())
    outputs = store.teacher().round_dir(0) / teacher.OUTPUTS
    digest = file_digest(outputs)
    run_lottery(config, tmp_path)  # round 2 reads the sealed teacher unit
    assert computed == [1]
    record = store.metrics(2)
    assert record["cost"]["teacher_flops"] == 0  # it paid nothing for its teacher
    assert store.teacher().metrics(0)["cost"]["teacher_flops"] > 0  # the teacher's one pass, counted once
    with open(outputs, "r+b") as handle:  # damage it
        handle.seek(-3, 2)
        handle.write(b"\x00\x01\x02")
    caplog.set_level(logging.WARNING)
    run_controls(config, tmp_path, ["random"], rounds=[1])
    assert computed == [1, 1]
    assert any("teacher/round_00 is damaged" in r.getMessage() for r in caplog.records)
    assert file_digest(outputs) == digest  # computed again, the same outputs


def test_a_distilled_ticket_differs_from_a_plain_one_and_its_dense_round_is_the_plain_runs(
    tiny_model_dir, reviews, tmp_path
):
    plain = ticketlab.find(
        str(tiny_model_dir), "rotten-tomatoes", data=str(reviews), sparsity=0.1, out=tmp_path, **QUICK
    )
    distilled = ticketlab.find(
        str(tiny_model_dir), "rotten-tomatoes", data=str(reviews), sparsity=0.1, out=tmp_path, distill=True, **QUICK
    )
    assert distilled.rounds[0]["train_loss"] == plain.rounds[0]["train_loss"]  # round 0 copied: no distillation
    assert distilled.rounds[1]["train_loss"] != plain.rounds[1]["train_loss"]
    assert math.isfinite(distilled.rounds[1]["train_loss"])
    results = collect([tmp_path])
    arms = {result.arm for result in results}
    assert {"imp", "imp · distilled"} <= arms  # the distilled run's arms beside the plain run's, one dense model
    costs = unit_costs(results).set_index(["arm", "level"])
    teacher_unit = RunStore(distilled.path).teacher().metrics(0)["cost"]
    expected = distilled.rounds[1]["cost"]["train_flops"] + teacher_unit["teacher_flops"]
    assert costs.loc[("imp · distilled", 0.1), "train_flops"] == expected
    assert costs.loc[("imp", 0.1), "train_flops"] == plain.rounds[1]["cost"]["train_flops"]


def test_earlybert_tickets_distil_and_report_as_their_own_group(tiny_model_dir, reviews, tmp_path):
    settings = ticketlab.EarlyBirdConfig(draw_every=1, window=2, threshold=0.2)
    options = dict(data=str(reviews), out=tmp_path, settings=settings, **QUICK)
    plain = ticketlab.earlybert(str(tiny_model_dir), "rotten-tomatoes", **options)
    distilled = ticketlab.earlybert(str(tiny_model_dir), "rotten-tomatoes", distill=True, **options)
    assert "teacher_flops" in distilled.earlybert["cost"] and "teacher_flops" not in plain.earlybert["cost"]
    assert distilled.earlybert["train_loss"] != plain.earlybert["train_loss"]
    results = collect([tmp_path])
    labels = [group.settings for group in earlybert_groups(results)]
    assert len(labels) == 2 and sum(label.endswith(" · distilled") for label in labels) == 1
    for name, result in (("plain", plain), ("distilled", distilled)):
        branch = next(b for b in RunStore(result.run).branches() if b.startswith("earlybert-") and "random" not in b)
        model = RunStore(result.run).branch(branch).round_dir(0) / "model"
        ticketlab.export_ticket(model, tmp_path / "exports" / name, "int8", batch_size=1, length=8)
    frontier = frontier_table(results, timed_exports([tmp_path / "exports"]), {"rotten-tomatoes": ("dev", "accuracy")})
    assert sorted(frontier.arm) == ["dense", "earlybert", "earlybert · distilled"]  # side by side, not one arm


def test_a_bf16_runs_ticket_exports_and_scores_in_fp32(tiny_model_dir, reviews, tmp_path):
    result = ticketlab.find(
        str(tiny_model_dir), "rotten-tomatoes", data=str(reviews), sparsity=0.5, schedule="0.5", out=tmp_path / "runs",
        precision="bf16", **QUICK,
    )  # fmt: skip
    folder = ticketlab.export_ticket(f"{result.path}:1", tmp_path / "shipped", "sparse", length=16)
    record = json.loads((folder / "export.json").read_text())
    assert record["dev"]["exported"] == pytest.approx(record["dev"]["masked dense"])


def test_a_transferred_ticket_learns_from_the_target_runs_dense_round(tiny_model_dir, reviews, tmp_path):
    source = ticketlab.find(
        str(tiny_model_dir), "rotten-tomatoes", data=str(reviews), sparsity=0.1, out=tmp_path, **QUICK
    )
    record = ticketlab.transfer(
        f"{source.path}:1", "rotten-tomatoes", data=str(reviews), sparsity=0.1, out=tmp_path, distill=True, **QUICK
    )
    assert record["cost"]["teacher_flops"] == 0  # read from the target run's teacher unit
    (target,) = tmp_path.glob("*_distill-*")
    assert RunStore(target).teacher().is_complete(0) and not RunStore(source.path).teacher().is_complete(0)
