"""Exports that ship: every sparse kernel against the plain product, the kernel choice, and each format of a tiny
run's ticket read back with load_sparse (same outputs as the masked dense model, to 1e-5 in fp32)."""

import json
import logging
import shutil

import pytest
import torch
from helpers import flip, truncate
from transformers import BertForSequenceClassification, BertModel

import ticketlab
from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.export import FORMATS, export_ticket, formats, load_sparse
from ticketlab.export.compressed import COMPRESSED
from ticketlab.export.kernels import (
    INT8,
    KERNEL_NAMES,
    available_kernels,
    bf16_kernels,
    block_shape,
    compiled_library,
    square_block,
)
from ticketlab.export.sparse import SparseLinear, apply_plan, sparsify
from ticketlab.hardware import native_bf16
from ticketlab.masks import load_mask
from ticketlab.store import MARKER, seal


def block_mask(out, inp, rows, cols, density, generator):
    kept = torch.rand(out // rows, inp // cols, generator=generator) < density
    return kept.repeat_interleave(rows, 0).repeat_interleave(cols, 1)


def test_the_compiled_kernel_builds_where_a_compiler_exists():
    assert compiled_library() is not None
    assert "compiled" in available_kernels()


@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 4), (2, 2), (4, 4), (8, 8), (4, 8)])
@pytest.mark.parametrize("tokens", [1, 16, 37])
@pytest.mark.parametrize("with_bias", [True, False])
def test_every_kernel_computes_the_masked_product(rows, cols, tokens, with_bias):
    generator = torch.Generator().manual_seed(rows * 100 + cols + tokens)
    out, inp = 48, 64
    weight, mask = torch.randn(out, inp, generator=generator), block_mask(out, inp, rows, cols, 0.3, generator)
    bias = torch.randn(out, generator=generator) if with_bias else None
    x = torch.randn(tokens, inp, generator=generator)
    expected = torch.nn.functional.linear(x, weight * mask, bias)
    for kernel in available_kernels().values():
        if kernel.fits(mask):
            torch.testing.assert_close(
                kernel.run(kernel.prepare(weight, mask, bias), x), expected, rtol=1e-5, atol=1e-5
            )
    approximate = INT8.run(INT8.prepare(weight, mask, bias), x)
    assert (approximate - expected).abs().max() < 0.05 * expected.abs().max()


def test_block_shapes_are_found_as_the_mask_is_cut():
    generator = torch.Generator().manual_seed(0)
    assert block_shape(block_mask(16, 16, 4, 8, 0.5, generator)) == (4, 8)
    assert block_shape(block_mask(16, 16, 8, 8, 0.5, generator)) == (4, 8)  # the kernel's largest row count is 4
    assert square_block(block_mask(16, 16, 8, 8, 0.5, generator)) == 8
    assert square_block(block_mask(16, 16, 1, 4, 0.5, generator)) is None
    assert block_shape(torch.rand(16, 16, generator=generator) < 0.5) == (1, 1)


def tiny_linear_model():
    torch.manual_seed(0)
    model = BertModel(
        BertModel.config_class(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=50
        )
    ).eval()
    mask = {name: torch.rand_like(p) < 0.2 for name, p in model.named_parameters() if name.endswith("query.weight")}
    return model, mask


def test_kernel_choice_falls_back_to_dense_where_sparse_is_slower():
    model, mask = tiny_linear_model()
    timer = {"dense": 1.0, "torch-csr": 2.0, "torch-bsr": 2.0, "compiled": 3.0}
    plan = sparsify(model, mask, tokens=8, timer=lambda kernel, operands, x: timer[kernel.name])
    assert {entry["kernel"] for entry in plan.values()} == {"dense"}
    assert not any(isinstance(module, SparseLinear) for module in model.modules())  # the model's own layer stays
    assert plan["encoder.layer.0.attention.self.query"]["ms"]["compiled"] == 3000.0
    faster = sparsify(*tiny_linear_model(), tokens=8, timer=lambda kernel, operands, x: -timer[kernel.name])
    assert {entry["kernel"] for entry in faster.values()} == {"compiled"}


def test_a_sparse_layer_keeps_the_forward_shape_and_refuses_other_dtypes():
    model, mask = tiny_linear_model()
    sparsify(model, mask, tokens=4, timer=lambda kernel, operands, x: kernel.name != "compiled")
    layer = model.encoder.layer[0].attention.self.query
    assert isinstance(layer, SparseLinear)
    assert layer(torch.randn(2, 3, 32)).shape == (2, 3, 32)
    with pytest.raises(TicketlabError, match="fp32 on the CPU"):
        layer(torch.randn(2, 32, dtype=torch.float64))


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = ticketlab.find(
        str(tiny_model_dir),
        sparsity=0.5,
        schedule="geometric",
        rate=0.5,
        out=out,
        train_examples=32,
        batch_size=16,
        epochs=1,
    )
    return result.path


def random_batch(vocab_size, generator):
    ids = torch.randint(0, vocab_size, (3, 20), generator=generator)
    attention = torch.ones_like(ids)
    attention[1, 12:] = 0
    return {"input_ids": ids, "attention_mask": attention}


@pytest.mark.parametrize("format", ["dense", "sparse"])
def test_an_exact_export_gives_the_masked_dense_models_outputs(trained_run, tmp_path, format):
    folder = export_ticket(trained_run, tmp_path / format, format=format, batch_size=2, length=16)
    record = json.loads((folder / "export.json").read_text())
    dev = record["dev"]
    assert "fine-tuned" in record["weights"] and dev.get("exported", dev["masked dense"]) == dev["masked dense"]
    assert record["bytes"]["model"] == record["bytes"]["dense"] == (folder / "model.safetensors").stat().st_size
    plain = BertForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    mask = load_mask(folder / "mask.safetensors")[0]
    weights = dict(plain.bert.named_parameters())
    assert all((weights[name][~kept] == 0).all() for name, kept in mask.items())
    shipped = load_sparse(folder)
    batch = random_batch(plain.config.vocab_size, torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(shipped(**batch).logits, plain(**batch).logits, rtol=1e-5, atol=1e-5)
    if format == "sparse":
        assert set(record["kernels"]) == {name.rpartition(".")[0] for name in mask}
        sparse = [entry for entry in record["kernels"].values() if entry["kernel"] != "dense"]
        assert sum(isinstance(m, SparseLinear) for m in shipped.modules()) == len(sparse)
        assert_raced_against_dense(record["latency"])
    else:
        assert "latency" not in record


def assert_raced_against_dense(latency):
    """Every dense way this machine has was timed, and the speedup is over the fastest of them."""
    dense = latency["dense ms"]
    assert set(dense) == {"fp32", "int8", *(["bf16 weights", "bf16 autocast"] if native_bf16("cpu") else [])}
    assert latency["fastest dense"] == min(dense, key=dense.get)
    assert latency["speedup"] == pytest.approx(min(dense.values()) / latency["exported ms"], rel=1e-2)


def test_int8_exports_record_their_dev_metrics_and_stay_close(trained_run, tmp_path):
    for format in ("int8", "sparse-int8"):
        folder = export_ticket(trained_run, tmp_path / format, format=format, batch_size=2, length=16)
        record = json.loads((folder / "export.json").read_text())
        assert set(record["dev"]) == {"masked dense", "exported"}
        assert_raced_against_dense(record["latency"])
        plain = BertForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
        batch = random_batch(plain.config.vocab_size, torch.Generator().manual_seed(2))
        with torch.no_grad():
            assert (load_sparse(folder)(**batch).logits - plain(**batch).logits).abs().max() < 0.05


def test_a_bf16_export_stays_close_where_the_cpu_runs_bf16_and_is_refused_elsewhere(trained_run, tmp_path, monkeypatch):
    if native_bf16("cpu"):
        folder = export_ticket(trained_run, tmp_path / "bf16", format="sparse-bf16", batch_size=2, length=16)
        record = json.loads((folder / "export.json").read_text())
        tried = [set(entry["ms"]) for entry in record["kernels"].values()]
        assert all("dense" not in ms and {"dense-bf16", "compiled-bf16"} <= ms for ms in tried)
        assert_raced_against_dense(record["latency"])
        plain = BertForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
        batch = random_batch(plain.config.vocab_size, torch.Generator().manual_seed(4))
        dense_bf16 = export_ticket(trained_run, tmp_path / "dense-bf16", format="bf16", batch_size=2, length=16)
        assert_raced_against_dense(json.loads((dense_bf16 / "export.json").read_text())["latency"])
        shipped = load_sparse(dense_bf16)
        assert {p.dtype for p in shipped.parameters()} == {torch.bfloat16}
        with torch.no_grad():
            assert (load_sparse(folder)(**batch).logits - plain(**batch).logits).abs().max() < 0.05
            assert (shipped(**batch).logits.float() - plain(**batch).logits).abs().max() < 0.05
    monkeypatch.setattr(formats, "native_bf16", lambda device: False)
    for format in ("sparse-bf16", "bf16"):
        with pytest.raises(TicketlabError, match=f"^{format} needs a CPU with native bf16"):
            export_ticket(trained_run, tmp_path / "refused", format=format)
        assert not (tmp_path / "refused").exists()


def test_an_onnx_export_runs_on_onnx_runtime(trained_run, tmp_path):
    folder = export_ticket(trained_run, tmp_path / "onnx", format="onnx")
    assert (folder / "model.onnx").stat().st_size > 0
    record = json.loads((folder / "export.json").read_text())
    assert record["onnx_max_abs_error"] < 1e-4
    assert record["bytes"]["model"] == sum(file.stat().st_size for file in folder.glob("model.onnx*"))


def test_a_mask_file_exports_the_ticket_on_the_pretrained_weights(trained_run, tiny_model_dir, tmp_path):
    folder = export_ticket(f"{trained_run}:1", tmp_path / "masks-only", format="dense")  # round 1's weights: kept
    ticket = export_ticket(folder / "mask.safetensors", tmp_path / "theta0", format="sparse", model=str(tiny_model_dir))
    record = json.loads((ticket / "export.json").read_text())
    assert "pre-trained" in record["weights"] and "dev" not in record


def test_an_export_without_the_compiled_kernel_uses_the_others(trained_run, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "a-file" / "cache"))  # unwritable, even by root
    compiled_library.cache_clear()
    try:
        folder = export_ticket(trained_run, tmp_path / "sparse", format="sparse", batch_size=2, length=16)
        plan = json.loads((folder / "export.json").read_text())["kernels"]
        assert all(set(entry["ms"]) == {"dense", "torch-csr"} for entry in plan.values())  # no square blocks here
        assert load_sparse(folder) is not None
    finally:
        compiled_library.cache_clear()  # the next test builds it again where it can


def test_bad_exports_say_so_in_one_line_and_write_nothing(trained_run, tmp_path):
    with pytest.raises(TicketlabError, match="unknown export format"):
        export_ticket(trained_run, tmp_path / "x", format="csr")
    with pytest.raises(TicketlabError, match="at least 1"):
        export_ticket(trained_run, tmp_path / "x", batch_size=0)
    (tmp_path / "taken").mkdir()
    with pytest.raises(TicketlabError, match="exists already"):
        export_ticket(trained_run, tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    with pytest.raises(TicketlabError, match="not a ticketlab export folder"):
        load_sparse(tmp_path / "taken")


def test_the_export_command_prints_the_kernels_and_the_dev_metrics(trained_run, tmp_path, capsys):
    assert main(["export", str(trained_run), "--format", "sparse", "--length", "16", "--out", str(tmp_path / "x")]) == 0
    printed = capsys.readouterr().out
    assert "pruned linear layers on 1 x 16 tokens" in printed and "exported: dev_accuracy" in printed
    assert "whole model on 1 x 16 tokens: exported" in printed and "the fastest dense (" in printed
    assert set(FORMATS) >= {"dense", "sparse", "int8", "onnx"}


@pytest.mark.parametrize("kernel", ["compiled", "torch-csr"])
def test_a_plan_rebuilds_the_model_with_its_kernels_and_the_same_outputs(trained_run, tmp_path, kernel):
    folder = export_ticket(trained_run, tmp_path / "dense", format="dense")
    plain = BertForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    mask = load_mask(folder / "mask.safetensors")[0]
    shipped = BertForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    plan = {name.rpartition(".")[0]: {"kernel": kernel, "ms": {kernel: 0.0, "dense": 1.0}} for name in mask}
    apply_plan(shipped, mask, plan)
    assert sum(isinstance(module, SparseLinear) for module in shipped.modules()) == len(plan)
    batch = random_batch(plain.config.vocab_size, torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(shipped(**batch).logits, plain(**batch).logits, rtol=1e-5, atol=1e-5)


def test_a_compressed_export_gives_the_masked_models_logits_in_fewer_bytes(trained_run, tmp_path, capsys):
    dense = export_ticket(trained_run, tmp_path / "dense", format="dense")
    assert main(["export", str(trained_run), "--format", "compressed", "--out", str(tmp_path / "compressed")]) == 0
    assert "on disk: the model" in capsys.readouterr().out
    folder = tmp_path / "compressed"
    assert (folder / COMPRESSED).is_file() and not (folder / "model.safetensors").exists()
    record = json.loads((folder / "export.json").read_text())
    assert record["dev"]["exported"] == record["dev"]["masked dense"]
    plain = BertForSequenceClassification.from_pretrained(dense, dtype=torch.float32).eval()
    batch = random_batch(plain.config.vocab_size, torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(load_sparse(folder)(**batch).logits, plain(**batch).logits, rtol=1e-5, atol=1e-5)
    # bytes: the dense file less 4 per pruned weight, plus a bit per masked weight and a header
    mask = load_mask(folder / "mask.safetensors")[0]
    masked, pruned = sum(m.numel() for m in mask.values()), sum(int((~m).sum()) for m in mask.values())
    size = record["bytes"]
    assert size["dense"] == json.loads((dense / "export.json").read_text())["bytes"]["model"]
    assert size["dense"] - 4 * pruned < size["model"] < size["dense"] - 4 * pruned + masked / 8 + 16_384
    with pytest.raises(OSError, match="no file named model.safetensors"):  # never weights drawn anew
        BertForSequenceClassification.from_pretrained(folder)


def test_an_int8_compressed_export_stores_a_byte_a_kept_weight_and_stays_close(trained_run, tmp_path):
    """compressed-int8: the kept values and every other matrix (the embeddings) in INT8 with a scale per row."""
    exact = export_ticket(trained_run, tmp_path / "exact", format="compressed")
    folder = export_ticket(trained_run, tmp_path / "int8", format="compressed-int8")
    record = json.loads((folder / "export.json").read_text())
    model = load_sparse(folder)
    reference = load_sparse(exact)
    mask = load_mask(folder / "mask.safetensors")[0]
    weights, exact_weights = dict(model.bert.named_parameters()), dict(reference.bert.named_parameters())
    for name, kept in mask.items():  # pruned stay exactly zero; kept within half a step of their row's scale
        assert (weights[name][~kept] == 0).all()
        step = exact_weights[name].abs().amax(dim=-1, keepdim=True) / 127
        assert ((weights[name] - exact_weights[name]).abs() <= step / 2 + 1e-7).all()
    batch = random_batch(model.config.vocab_size, torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, reference(**batch).logits, rtol=0, atol=0.05)
    # bytes: 3 fewer a stored matrix weight (kept, or of an unpruned matrix), 4 more a row (its scale), a header
    state = {name: p for name, p in reference.state_dict().items() if p.dim() == 2}
    kept = {f"bert.{name}": int(m.sum()) for name, m in mask.items()}
    stored = sum(kept.get(name, p.numel()) for name, p in state.items())
    saved = 3 * stored - 4 * sum(p.shape[0] for p in state.values())
    exact_bytes = json.loads((exact / "export.json").read_text())["bytes"]["model"]
    assert abs(exact_bytes - record["bytes"]["model"] - saved) < 16_384
    assert "load_sparse" in (folder / "README.md").read_text()


def test_a_damaged_compressed_file_is_refused_in_one_line(trained_run, tmp_path):
    folder = export_ticket(trained_run, tmp_path / "compressed", format="compressed")
    (folder / MARKER).unlink()  # the file's own CRC-32s, without the folder's seal (which refuses it first)
    path = folder / COMPRESSED
    original = path.read_bytes()
    middle = len(original) // 2
    for damaged in (original[:middle], original[:middle] + bytes([original[middle] ^ 1]) + original[middle + 1 :]):
        path.write_bytes(damaged)
        with pytest.raises(TicketlabError, match="is damaged or not a ticketlab compressed file") as error:
            load_sparse(folder)
        assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def sealed(trained_run, tmp_path_factory):
    """A sparse export of the tiny run, to copy and damage."""
    return export_ticket(trained_run, tmp_path_factory.mktemp("sealed") / "sparse", format="sparse", length=16)


def copied(sealed, tmp_path):
    return shutil.copytree(sealed, tmp_path / "copy")


def refused(folder, match):
    with pytest.raises(TicketlabError, match=match) as error:
        load_sparse(folder)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("damage", [flip, truncate, lambda path: path.unlink()])
def test_a_damaged_export_is_refused_in_one_line_naming_the_file(sealed, tmp_path, capsys, damage):
    folder = copied(sealed, tmp_path)
    assert main(["verify", str(folder)]) == 0 and "1 units checked, 0 damaged" in capsys.readouterr().out
    damage(folder / "model.safetensors")
    refused(folder, "copy is damaged: model.safetensors (does not match its digest|missing); export the ticket again")
    assert main(["verify", str(folder)]) == 1
    assert "copy: damaged, model.safetensors" in capsys.readouterr().out


def test_an_unknown_format_or_kernel_is_refused_in_one_line(sealed, tmp_path):
    folder = copied(sealed, tmp_path)
    record = json.loads((folder / "export.json").read_text())
    (folder / "export.json").write_text(json.dumps({**record, "format": "bogus"}))
    refused(folder, "export.json does not match its digest")
    seal(folder, {})  # as if written so: the format itself is refused
    refused(folder, "export.json names an unknown format 'bogus'; known: dense, sparse")
    layer = next(iter(record["kernels"]))
    record["kernels"][layer]["kernel"] = "cusparselt"
    (folder / "export.json").write_text(json.dumps(record))
    seal(folder, {})
    refused(folder, f"runs {layer} with 'cusparselt', a kernel ticketlab does not have; known: dense, torch-csr")


def test_every_kernel_is_one_a_plan_may_name():
    assert {*available_kernels(), *bf16_kernels(), INT8.name} <= set(KERNEL_NAMES)


def test_a_kernel_missing_here_falls_back_with_one_log_line(sealed, caplog):
    model = BertForSequenceClassification.from_pretrained(sealed, dtype=torch.float32).eval()
    mask = load_mask(sealed / "mask.safetensors")[0]
    plan = {name.rpartition(".")[0]: {"kernel": "compiled", "ms": {"compiled": 0.0, "dense": 1.0}} for name in mask}
    without = {name: kernel for name, kernel in available_kernels().items() if name != "compiled"}
    with caplog.at_level(logging.WARNING):
        apply_plan(model, mask, plan, without)
    lines = [r.getMessage() for r in caplog.records if "not available on this machine" in r.getMessage()]
    assert lines == [
        f"kernels recorded but not available on this machine: compiled ({len(plan)} layers); those layers "
        "run the fastest recorded one it has"
    ]


def test_an_export_made_before_sealing_loads_with_a_warning(sealed, tmp_path, capsys, caplog):
    folder = copied(sealed, tmp_path)
    (folder / MARKER).unlink()
    with caplog.at_level(logging.WARNING):
        assert load_sparse(folder) is not None
    assert [r.getMessage() for r in caplog.records if MARKER in r.getMessage()] == [
        f"{folder} has no {MARKER} (exported before exports were sealed): read unchecked; export it again"
    ]
    assert main(["verify", str(folder)]) == 1
    assert "copy: damaged, COMPLETE missing: exported before ticketlab sealed its exports" in capsys.readouterr().out
    truncate(folder / "model.safetensors")  # unsealed: what reads it still says so in one line
    refused(folder, "cannot load the model in .*copy: ")
