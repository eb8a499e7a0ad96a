"""EarlyBERT end to end on a tiny random BERT: search with slimming coefficients, early-bird stop, compaction,
training of the smaller model, the random structured baseline, the store, the CLI and the L1 penalty."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from helpers import assert_same_outputs, documents, flip, truncate
from transformers import AutoModelForSequenceClassification

from ticketlab.cli import main
from ticketlab.earlybert import EarlyBirdConfig, earlybert, layer_shapes, load_compact, structure_mask
from ticketlab.earlybert.search import EarlyBirdSearch, slimming
from ticketlab.export import export_ticket, load_sparse
from ticketlab.export.latency import dense_variants as formats_dense_variants
from ticketlab.hardware import native_bf16
from ticketlab.lottery import RunContext
from ticketlab.masks import load_mask, sparsity
from ticketlab.pruning.settle import SettleTest
from ticketlab.report.build import load_results
from ticketlab.report.frontier import frontier_table, timed_exports
from ticketlab.store import RunStore, verify
from ticketlab.train.hooks import TrainHook

FAST = dict(train_examples=64, batch_size=16, epochs=4, learning_rate=1e-3, seed=3)
SETTINGS = EarlyBirdConfig(draw_every=1, window=3, threshold=0.2)


class CountTrainings(TrainHook):
    def __init__(self):
        self.count = 0

    def before_train(self, model):
        self.count += 1


@pytest.fixture(scope="module")
def searched(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return earlybert(str(tiny_model_dir), out=out, settings=SETTINGS, **FAST), out


def test_the_ticket_keeps_the_requested_counts_and_trains_as_a_smaller_model(searched, tiny_model_dir):
    result, _ = searched
    shape = result.earlybert["structure"]
    assert shape["heads_total"] == [2, 2] and [len(h) for h in shape["heads"]] == [
        1,
        1,
    ]  # round(2 / 3) = 1 of 2 heads go
    assert sum(shape["ffn_total"]) == 128 and sum(shape["ffn_kept"]) == 128 - round(0.4 * 128)
    assert min(shape["ffn_kept"]) >= 1
    assert shape["params"] < shape["dense_params"]
    branch = RunStore(result.run).branch(SETTINGS.branch("earlybert"))
    structure = load_mask(branch.structure_path(0))[0]
    mask = load_mask(branch.mask_path(0))[0]
    assert result.earlybert["sparsity"] == pytest.approx(sparsity(mask))
    dense = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    assert all(torch.equal(mask[k], v) for k, v in structure_mask(dense, structure).items())

    model = load_compact(branch.round_dir(0) / "model")
    assert layer_shapes(model) == [(1, n) for n in shape["ffn_kept"]]
    assert sum(p.numel() for p in model.parameters()) == shape["params"]
    lottery = RunContext(RunStore.open(result.run).config(), RunStore.open(result.run), 100, ())
    assert lottery.evaluate("dev", model) == result.earlybert["dev"]  # the stored model is the one evaluated


def test_the_search_stops_at_the_early_bird_and_records_its_draws(searched):
    result, _ = searched
    search = result.earlybert["search"]
    draws = search["draws"]
    assert [d["step"] for d in draws] == list(range(1, len(draws) + 1))  # every step (draw_every=1)
    assert search["draw_step"] == draws[-1]["step"] == search["steps"]
    assert all(d["window"] is None for d in draws[: SETTINGS.window])
    assert all(d["window"] >= SETTINGS.threshold for d in draws[SETTINGS.window : -1])
    if search["early_bird"]:
        assert draws[-1]["window"] < SETTINGS.threshold and search["steps"] < result.dense["steps"]
    else:
        assert search["steps"] == result.dense["steps"]
    expected = (search["time_s"] + result.earlybert["train_time_s"]) / result.dense["train_time_s"]
    assert result.earlybert["time_ratio"] == pytest.approx(expected)
    assert result.earlybert["steps"] == result.dense["steps"]  # the smaller model trains with the dense recipe


def test_the_random_structured_ticket_has_the_same_counts_in_every_layer(searched):
    result, _ = searched
    ticket, random = result.earlybert["structure"], result.random["structure"]
    assert [len(h) for h in random["heads"]] == [len(h) for h in ticket["heads"]]
    assert random["ffn_kept"] == ticket["ffn_kept"] and random["params"] == ticket["params"]
    assert result.random["sparsity"] == pytest.approx(result.earlybert["sparsity"])
    store = RunStore(result.run)
    neurons = [
        load_mask(store.branch(SETTINGS.branch(arm)).structure_path(0))[0]["ffn.0"]
        for arm in ("earlybert", "earlybert-random")
    ]
    assert not torch.equal(*neurons)
    assert "search" not in result.random


def test_running_again_trains_nothing(searched, tiny_model_dir):
    result, out = searched
    counter = CountTrainings()
    again = earlybert(str(tiny_model_dir), out=out, settings=SETTINGS, hooks=[counter], **FAST)
    assert counter.count == 0
    assert again.earlybert == result.earlybert and again.random == result.random


class InterruptAt(TrainHook):
    """Raises KeyboardInterrupt after the `at`-th optimizer step of all trainings together."""

    def __init__(self, at: int):
        self.at, self.steps = at, 0

    def after_step(self, step, model):
        self.steps += 1
        if self.steps == self.at:
            raise KeyboardInterrupt


def test_an_interrupted_search_resumes_to_the_same_ticket_and_metrics(searched, tiny_model_dir, tmp_path):
    result, _ = searched
    dense_steps = result.dense["steps"]
    with pytest.raises(KeyboardInterrupt):  # 3 steps into the search, after its checkpoint at step 2
        earlybert(
            str(tiny_model_dir),
            out=tmp_path,
            settings=SETTINGS,
            hooks=[InterruptAt(dense_steps + 3)],
            checkpoint_every=2,
            **FAST,
        )
    branch = RunStore(tmp_path / result.run.name).branch(SETTINGS.branch("earlybert"))
    assert (branch.path / "search" / "search.pt").exists() and not (branch.path / "search" / "COMPLETE").exists()
    resumed = earlybert(str(tiny_model_dir), out=tmp_path, settings=SETTINGS, checkpoint_every=2, **FAST)
    for key in ("draws", "draw_step", "early_bird", "steps"):
        assert resumed.earlybert["search"][key] == result.earlybert["search"][key]
    assert resumed.earlybert["dev"] == result.earlybert["dev"] and resumed.random["dev"] == result.random["dev"]
    assert not (branch.path / "search" / "search.pt").exists()


def test_the_l1_penalty_changes_only_the_coefficients_gradients(tiny_model_dir):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2).eval()
    batch = {"input_ids": torch.randint(5, 100, (3, 9)), "labels": torch.tensor([0, 1, 1])}
    gradients = []
    with slimming(model) as coefficients:
        with torch.no_grad():
            for c in coefficients.parameters():
                c.uniform_(-1, 1)  # both signs
        for l1 in (0.0, 0.5):
            model.zero_grad()
            model(**batch).loss.backward()
            EarlyBirdSearch(coefficients, 1 / 3, 0.4, l1, 1, SettleTest()).after_backward(model)
            gradients.append({name: p.grad.clone() for name, p in model.named_parameters()})
        signs = {f"ticketlab_slimming.{name}": torch.sign(p.detach()) for name, p in coefficients.named_parameters()}
    plain, penalized = gradients
    assert set(signs) < set(plain)
    for name in plain:
        expected = plain[name] + 0.5 * signs[name] if name in signs else plain[name]
        assert torch.equal(penalized[name], expected), name
    assert not hasattr(model, "ticketlab_slimming")  # the coefficients leave with the context


def test_earlybert_runs_on_mlm_and_keeps_the_decoder_tied(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(documents(40)), encoding="utf-8")
    result = earlybert(
        str(tiny_model_dir),
        "mlm",
        data=str(corpus),
        out=tmp_path / "runs",
        settings=SETTINGS,
        max_length=32,
        batch_size=8,
    )
    assert set(result.earlybert["dev"]) == {"accuracy", "loss", "perplexity"}
    assert set(result.random["dev"]) == {"accuracy", "loss", "perplexity"}
    model = load_compact(RunStore(result.run).branch(SETTINGS.branch("earlybert")).round_dir(0) / "model")
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def cli(capsys, *args) -> tuple[int, str, str]:
    """`ticketlab ARGS` in this process (the subprocess tests of test_cli cover the entry point): exit code, stdout,
    stderr."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--heads", "0.9"], "prunes all 2 heads of layer 0"),
        (["--heads", "0"], "outside (0, 1)"),
        (["--ffn", "1"], "outside (0, 1)"),
        (["--window", "0"], "window"),
        (["--draw-every", "0"], "--draw-every"),
    ],
)
def test_bad_settings_are_one_line_errors_before_anything_is_written(tiny_model_dir, tmp_path, capsys, args, message):
    code, _, err = cli(
        capsys, "earlybert", "--model", tiny_model_dir, "--out", tmp_path / "runs", "--train-examples", "16", *args
    )
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_the_cli_prints_dense_earlybert_and_random(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli(
        capsys,
        "earlybert",
        "--model",
        tiny_model_dir,
        "--out",
        tmp_path / "runs",
        "--train-examples",
        "32",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--draw-every",
        "1",
        "--window",
        "2",
        "--heads",
        "1/3",
    )
    assert code == 0, err
    for label in ("dense", "EarlyBERT", "random", "2/4"):  # heads kept: 2 of 4
        assert label in out


@pytest.mark.parametrize(
    "name, corrupt",
    [
        ("search/search.json", lambda path: path.write_text("garbage")),
        ("search/ticket.safetensors", flip),
        ("round_00/model/model.safetensors", truncate),
    ],
)
def test_a_damaged_search_or_ticket_is_reported_once_and_made_again(
    name, corrupt, searched, tiny_model_dir, tmp_path, caplog
):
    result, out = searched
    copy = shutil.copytree(out, tmp_path / "runs")
    corrupt(copy / result.run.name / "branches" / SETTINGS.branch("earlybert") / name)
    assert [unit for unit, problems in verify([copy]) if problems]
    with caplog.at_level(logging.WARNING, logger="ticketlab"):
        earlybert(str(tiny_model_dir), out=copy, settings=SETTINGS, **FAST)
    (report,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "is damaged" in report and name.split("/")[-1] in report
    assert_same_outputs(copy, out)


def test_a_compacted_model_exports_to_int8_raced_against_its_full_size_model(searched, tmp_path, monkeypatch):
    result, _ = searched
    folder = RunStore(result.run).branch(SETTINGS.branch("earlybert")).round_dir(0) / "model"
    raced = []

    def dense_variants(model):
        raced.append(sum(p.numel() for p in model.parameters()))
        return formats_dense_variants(model)

    monkeypatch.setattr("ticketlab.export.formats.dense_variants", dense_variants)
    shipped = export_ticket(folder, tmp_path / "exports" / "int8", format="int8")
    record = json.loads((shipped / "export.json").read_text())
    assert "compacted EarlyBERT" in record["weights"] and set(record["dev"]) == {"masked dense", "exported"}
    assert raced == [result.earlybert["structure"]["dense_params"]] and record["latency"]["speedup"] > 0
    assert record["ticket"]["branch"] == SETTINGS.branch("earlybert")
    model = load_sparse(shipped)
    assert type(model) is type(load_compact(folder))
    assert any("quantized" in type(module).__module__ for module in model.modules())
    results, deciders = load_results([result.run])
    frontier = frontier_table(results, timed_exports([tmp_path / "exports"]), deciders)
    assert list(frontier.arm) == ["dense", "earlybert"] and frontier.n.tolist() == [1, 1]


@pytest.mark.skipif(not native_bf16("cpu"), reason="bf16 exports need a CPU with native bf16")
def test_a_compacted_model_exports_in_bf16_with_bf16_weights(searched, tmp_path):
    result, _ = searched
    folder = RunStore(result.run).branch(SETTINGS.branch("earlybert")).round_dir(0) / "model"
    shipped = export_ticket(folder, tmp_path / "bf16", format="bf16")
    record = json.loads((shipped / "export.json").read_text())
    assert record["bytes"]["model"] < 0.6 * record["bytes"]["dense"] and "speedup" in record["latency"]
    assert {p.dtype for p in load_sparse(shipped).parameters()} == {torch.bfloat16}
    dev = record["dev"]
    assert dev["exported"]["dev_accuracy"] == pytest.approx(dev["masked dense"]["dev_accuracy"], abs=0.1)
