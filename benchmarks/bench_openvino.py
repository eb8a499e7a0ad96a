"""OpenVINO against ticketlab's sparse export, side by side in one process, on the same 90% ticket of minilm-l6.

OpenVINO's CPU plugin is the one maintained CPU runtime that skips zeros in weights: with
CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE it packs the INT8 weights of a MatMul whose sparsity passes the rate and
unpacks them in its kernel (documented for CPUs with AMX). Raced here, turns alternating (ticketlab.export.latency.race,
medians): every dense torch variant (fp32, bf16 where native, dynamic INT8), ticketlab's sparse formats (each layer's
kernel chosen on the shape), and OpenVINO on the masked model: fp32, bf16 (where native), its weights compressed to
INT8 by NNCF (data-free), and the same with sparse weights decompression asked for. OpenVINO gets the same threads as
torch. The ticket: magnitude pruning of the pre-trained weights ("layers" scope); latency does not depend on training.

Not a dependency of ticketlab: `pip install openvino nncf` to run it.
Run: .venv/bin/python benchmarks/bench_openvino.py [--sparsity 0.9] [--batches 1 32] [--repeats 9]
"""

from __future__ import annotations

import argparse
import copy
import os
from typing import Any, Callable

import nncf
import openvino as ov
import torch
from transformers import AutoModel

from ticketlab.export.formats import kernels_for
from ticketlab.export.kernels import quantize
from ticketlab.export.latency import dense_variants, race, text_inputs
from ticketlab.export.sparse import sparsify
from ticketlab.hardware import cpu_features, cpu_name, native_bf16
from ticketlab.masks import apply_mask, ones_like
from ticketlab.models import layer_stack_weights, load_pretrained, prunable_weights, resolve_model
from ticketlab.pruning import magnitude_prune, scope_rankings

MODEL = "minilm-l6"


def openvino_variants(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, Callable[..., Any]]:
    """The masked model compiled by OpenVINO for the CPU in each way it offers, by name."""
    core = ov.Core()
    converted = ov.convert_model(model, example_input=dict(inputs))
    compressed = nncf.compress_weights(converted.clone(), mode=nncf.CompressWeightsMode.INT8_ASYM)
    threads = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY"}
    ways = {"openvino fp32": (converted, {"INFERENCE_PRECISION_HINT": "f32"})}
    if native_bf16("cpu"):
        ways["openvino bf16"] = (converted, {"INFERENCE_PRECISION_HINT": "bf16"})
    ways["openvino int8 weights"] = (compressed, {})
    ways["openvino int8 weights, sparse decompression"] = (compressed, {"CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE": 0.5})
    compiled = {name: core.compile_model(graph, "CPU", {**threads, **config}) for name, (graph, config) in ways.items()}
    return {name: _runner(model) for name, model in compiled.items()}


def _runner(compiled: Any) -> Callable[..., Any]:
    request = compiled.create_infer_request()

    def forward(**inputs: torch.Tensor) -> Any:
        return request.infer({name: tensor.numpy() for name, tensor in inputs.items()})

    return forward


def sparse_exports(model: torch.nn.Module, mask: dict, tokens: int) -> dict[str, torch.nn.Module]:
    """The masked model as each of ticketlab's sparse formats this machine runs, planned on `tokens` rows."""
    formats = ["sparse", "sparse-int8", *(["sparse-bf16"] if native_bf16("cpu") else [])]
    exports = {}
    for format in formats:
        shipped = copy.deepcopy(model)
        sparsify(shipped, mask, tokens, kernels_for(format))
        if format == "sparse-int8":
            quantize(shipped)
        exports[f"ticketlab {format}"] = shipped
    return exports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--turn", type=float, default=0.3, help="seconds of forward calls per turn, at least one call")
    args = parser.parse_args()
    print(
        f"{cpu_name()} ({', '.join(cpu_features())}; native bf16: {native_bf16('cpu')}), {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} threads; torch {torch.__version__}, OpenVINO {ov.__version__}, "
        f"its CPU capabilities: {', '.join(ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}"
    )
    dense = load_pretrained(resolve_model(MODEL), AutoModel, seed=0).eval()
    weights = prunable_weights(dense)
    rankings = scope_rankings("layers", list(weights), layer_stack_weights(dense))
    mask = magnitude_prune(weights, ones_like(weights), args.sparsity, rankings)
    masked = copy.deepcopy(dense)
    apply_mask(prunable_weights(masked), mask)
    rows = []
    for batch in args.batches:
        inputs = text_inputs(dense.config.vocab_size, batch, args.length)
        openvino = openvino_variants(masked, inputs)
        with torch.inference_mode():
            expected = masked(**inputs).last_hidden_state.numpy()
        error = abs(next(iter(openvino["openvino fp32"](**inputs).values())) - expected).max()
        print(f"batch {batch}: OpenVINO fp32's largest difference to the masked torch model: {error:.2e}")
        models = {**dense_variants(dense), **sparse_exports(masked, mask, batch * args.length), **openvino}
        timings = dict(zip(models, race(list(models.values()), inputs, args.repeats, args.turn)))
        torch_dense = min(("fp32", "bf16 weights", "bf16 autocast", "int8"), key=lambda k: timings.get(k, float("inf")))
        for name, ms in timings.items():
            rows.append((batch, name, ms, timings[torch_dense] / ms, torch_dense))
        print(f"batch {batch} x {args.length}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items()), flush=True)
    print("\n| batch x length | way to run it | ms | fastest torch dense / it |\n|---|---|---|---|")
    for batch, name, ms, speedup, reference in rows:
        print(f"| {batch} x {args.length} | {name} | {ms:.1f} | {speedup:.2f}x (over {reference}) |")


if __name__ == "__main__":
    main()
