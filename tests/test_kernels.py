"""What the machine has (ticketlab.hardware), the compiled kernel's build cache keyed by it and its one-line fallbacks,
and the dense baselines an export is raced against."""

import logging
import time

import pytest
import torch
from conftest import tiny_bert_config
from transformers import BertModel

from ticketlab import hardware
from ticketlab.errors import TicketlabError
from ticketlab.export import kernels
from ticketlab.export.kernels import available_kernels, bf16_kernels, compiled_library, library_key
from ticketlab.export.latency import against_dense, dense_variants, text_inputs

X86_FLAGS = "fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni"


@pytest.fixture
def cpuinfo(monkeypatch):
    """Fake /proc/cpuinfo lines; the cached answers are cleared before and after."""

    def fake(lines):
        monkeypatch.setattr(hardware, "_cpuinfo_lines", lambda: lines)
        hardware.cpu_features.cache_clear()
        hardware.native_bf16.cache_clear()

    yield fake
    hardware.cpu_features.cache_clear()
    hardware.native_bf16.cache_clear()


def test_cpu_features_and_native_bf16_come_from_the_cpus_flags(cpuinfo):
    cpuinfo(["processor\t: 0", "model name\t: Some CPU", f"flags\t\t: {X86_FLAGS}"])
    assert hardware.cpu_features() == ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni")
    assert not hardware.native_bf16("cpu") and hardware.cpu_name() == "Some CPU"
    cpuinfo([f"flags\t\t: {X86_FLAGS} avx512_bf16"])
    assert "avx512_bf16" in hardware.cpu_features() and hardware.native_bf16("cpu")
    cpuinfo([f"flags\t\t: {X86_FLAGS} amx_tile amx_bf16 amx_int8"])
    assert hardware.cpu_features()[-3:] == ("amx_tile", "amx_bf16", "amx_int8") and hardware.native_bf16("cpu")
    if not torch.cuda.is_available():  # "auto": the CPU where there is no GPU
        assert hardware.native_bf16() == hardware.native_bf16("cpu")


def test_without_proc_cpuinfo_the_features_come_from_torchs_dispatch_level(cpuinfo):
    cpuinfo([])
    expected = hardware.CAPABILITY_FLAGS.get(torch.backends.cpu.get_cpu_capability(), ())
    assert hardware.cpu_features() == expected and not hardware.native_bf16("cpu")


def test_a_device_native_bf16_does_not_know_is_refused_in_one_line():
    with pytest.raises(TicketlabError, match="device must be auto, cpu or cuda"):
        hardware.native_bf16("tpu")


@pytest.fixture
def fresh_library():
    """compiled_library() built anew in the test (its cached handle cleared before and after)."""
    compiled_library.cache_clear()
    yield
    compiled_library.cache_clear()


def test_a_shared_cache_keeps_one_library_per_cpu_kind(tmp_path, monkeypatch, fresh_library):
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path))
    assert compiled_library() is not None
    here = library_key("cc")
    monkeypatch.setattr(kernels, "cpu_features", lambda: ("avx2", "fma"))
    elsewhere = library_key("cc")
    assert elsewhere != here
    compiled_library.cache_clear()
    assert compiled_library() is not None  # built again for the other CPU, not loaded from this one's
    assert len(list((tmp_path / "kernels").glob("*.so"))) == 2
    monkeypatch.setattr(kernels, "cpu_features", lambda: ("avx2", "fma", "avx512f"))
    assert library_key("cc") not in (here, elsewhere)


def not_offered(caplog) -> str:
    """The one log line saying why the compiled kernel is not offered (and that no traceback came with it)."""
    [record] = [r for r in caplog.records if r.name == kernels.__name__]
    assert record.levelno == logging.WARNING and record.exc_info is None
    message = record.getMessage()
    assert "\n" not in message and message.startswith("the compiled sparse kernel is not offered")
    return message


def test_an_unwritable_cache_folder_leaves_the_other_kernels(tmp_path, monkeypatch, caplog, fresh_library):
    (tmp_path / "a-file").write_text("")  # a folder under a file cannot be made, even by root
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "a-file" / "cache"))
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        assert set(available_kernels()) == {"dense", "torch-csr", "torch-bsr"}
    assert "a-file" in not_offered(caplog)


def test_a_compiler_that_fails_leaves_the_other_kernels(tmp_path, monkeypatch, caplog, fresh_library):
    compiler = tmp_path / "cc"
    compiler.write_text("#!/bin/sh\necho 'cc: error: no such flag' >&2\necho 'second line' >&2\nexit 1\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", str(compiler))
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        assert "compiled" not in available_kernels()
    assert not_offered(caplog).endswith("cc: error: no such flag")


def test_dense_variants_are_the_same_model_in_fp32_bf16_where_native_and_int8():
    torch.manual_seed(0)
    model = BertModel(tiny_bert_config(vocab_size=100)).eval()
    variants = dense_variants(model)
    bf16 = ["bf16 weights", "bf16 autocast"] if hardware.native_bf16("cpu") else []
    assert list(variants) == ["fp32", *bf16, "int8"]
    inputs = text_inputs(100, 2, 8)
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
        for name, forward in variants.items():
            output = forward(**inputs).last_hidden_state.float()
            tolerance = 0 if name == "fp32" else 0.1 * expected.abs().max()
            assert (output - expected).abs().max() <= tolerance, name
    assert variants["fp32"] is not model  # a copy: converting the model afterwards leaves the baselines dense


def sleeper(seconds):
    return lambda **inputs: time.sleep(seconds)


def test_an_export_is_measured_against_the_fastest_dense_variant():
    dense = {"fp32": sleeper(0.006), "bf16 weights": sleeper(0.003), "int8": sleeper(0.009)}
    latency = against_dense(sleeper(0.001), dense, {}, repeats=3, turn=0.0)
    assert latency["fastest dense"] == "bf16 weights" and list(latency["dense ms"]) == list(dense)
    assert latency["dense ms"]["fp32"] > latency["dense ms"]["bf16 weights"] > latency["exported ms"] >= 1.0
    assert latency["speedup"] == pytest.approx(latency["dense ms"]["bf16 weights"] / latency["exported ms"], rel=1e-2)


def block_mask(out, inp, rows, cols, density, generator):
    kept = torch.rand(out // rows, inp // cols, generator=generator) < density
    return kept.repeat_interleave(rows, 0).repeat_interleave(cols, 1)


@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 4), (2, 2), (4, 4), (4, 8)])
@pytest.mark.parametrize("tokens", [1, 37])
def test_the_bf16_kernels_compute_the_masked_product_in_bf16(rows, cols, tokens):
    kernels_here = bf16_kernels()
    if not hardware.native_bf16("cpu"):
        assert kernels_here == {}  # never offered where bf16 would be emulated
        return
    assert set(kernels_here) == {"dense-bf16", "compiled-bf16"}
    generator = torch.Generator().manual_seed(rows * 100 + cols + tokens)
    out, inp = 48, 64
    weight, mask = torch.randn(out, inp, generator=generator), block_mask(out, inp, rows, cols, 0.3, generator)
    bias, x = torch.randn(out, generator=generator), torch.randn(tokens, inp, generator=generator)
    in_bf16 = torch.nn.functional.linear(x.bfloat16().float(), (weight * mask).bfloat16().float(), bias)
    exact = torch.nn.functional.linear(x, weight * mask, bias)
    rounding = {"compiled-bf16": 0.0, "dense-bf16": 2**-8}  # torch's bf16 GEMM rounds its product to bf16
    for name, kernel in kernels_here.items():
        y = kernel.run(kernel.prepare(weight, mask, bias), x)
        assert y.dtype == torch.float32 and y.shape == exact.shape
        tolerance = 1e-4 * in_bf16.abs().max() + rounding[name] * (in_bf16 - bias).abs()  # bf16 inputs, fp32 sums
        assert ((y - in_bf16).abs() <= tolerance).all(), name
        assert (y - exact).abs().max() < 0.02 * exact.abs().max(), name
