"""Whole-model latency of a ticket exported to run faster, fastest dense / exported, and the break-even sparsity of
each kernel (goals on 2 cores, 90% sparsity: >= 3x at batch 1 and >= 2x at batch 32 x 128 tokens; >= 5x with INT8 at
batch 1).

"Dense" is the fastest dense way this machine runs the model (ticketlab.export.latency.dense_variants): fp32, bf16
where the CPU runs it natively (AMX-BF16 or AVX512-BF16: the model cast to bf16 weights, and bf16 autocast) and
dynamic INT8 (torch.ao); all are timed, and the CPU's model and vector features are printed beside the figures. For
each model, granularity and sparsity: a magnitude ticket of the pre-trained weights (the default "layers" scope;
latency does not depend on training), the encoder exported as `sparse` (each pruned linear layer through the fastest
kernel of ticketlab.export.kernels, timed on the deployment shape), as `sparse-int8` and (native bf16)
`sparse-bf16`, raced against every dense variant in one process, turns alternating (the order rotating each repeat);
the ratio of medians is the speedup. A kernel's break-even sparsity is the lowest sparsity of the grid at which its time
summed over the pruned layers (from the export's own timings) is below fp32 dense's. The ceiling is fp32 dense / the
model with every prunable linear layer free (returning zeros at no cost): no fp32 kernel can beat it, so it bounds
every speedup over fp32 (Amdahl). ONNX Runtime runs the dense model and the 90% weight ticket, one session each, in
turns.
Run: .venv/bin/python benchmarks/bench_sparse_latency.py [--models minilm-l6 splade-tiny] [--batches 1 32]
Short: --models minilm-l6 --granularities weight block:4x4 --sparsities 0.9 --repeats 5 --no-onnx
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModel

from ticketlab.export.formats import kernels_for
from ticketlab.export.kernels import available_kernels, quantize
from ticketlab.export.latency import dense_variants, race, text_inputs
from ticketlab.export.onnx import write_onnx
from ticketlab.export.sparse import sparsify
from ticketlab.hardware import cpu_features, cpu_name, native_bf16
from ticketlab.masks import apply_mask, ones_like
from ticketlab.models import layer_stack_weights, load_pretrained, prunable_weights, resolve_model
from ticketlab.pruning import magnitude_prune, parse_granularity, scope_rankings

GRANULARITIES = ["weight", "block:1x4", "block:4x4", "block:8x8", "2:4"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["minilm-l6", "splade-tiny"])
    parser.add_argument("--granularities", nargs="*", default=GRANULARITIES, help="none: the ceiling and ONNX only")
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.7, 0.9, 0.95])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--turn", type=float, default=0.3, help="seconds of forward calls per turn, at least one call")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime comparison")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {cpu_name()} ({', '.join(cpu_features())}; native bf16: {native_bf16('cpu')}), "
        f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"kernels: {', '.join(available_kernels())}; load average at start {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for name in args.models:
        dense = load_pretrained(resolve_model(name), AutoModel, seed=0).eval()
        variants = dense_variants(dense)
        weights = prunable_weights(dense)
        rankings = scope_rankings("layers", list(weights), layer_stack_weights(dense))
        free = without_linear_cost(dense, weights)
        for batch in args.batches:
            inputs = text_inputs(dense.config.vocab_size, batch, args.length)
            dense_ms, free_ms = race((dense, free), inputs, args.repeats, args.turn)
            print(
                f"{name} batch {batch} x {args.length}: fp32 dense {dense_ms:.1f} ms, with the prunable linear layers "
                f"free {free_ms:.1f} ms: ceiling of any speedup over fp32 {dense_ms / free_ms:.2f}x",
                flush=True,
            )
            for granularity in args.granularities:
                plans = {}
                for sparsity in args.sparsities:
                    mask = magnitude_prune(
                        weights, ones_like(weights), sparsity, rankings, parse_granularity(granularity)
                    )
                    exports, plans[sparsity] = exported(dense, mask, batch * args.length)
                    ms = race((*variants.values(), *exports.values()), inputs, args.repeats, args.turn)
                    timings, shipped = dict(zip(variants, ms)), dict(zip(exports, ms[len(variants) :]))
                    fastest = min(timings, key=timings.__getitem__)
                    rows.append((name, batch, granularity, sparsity, timings, fastest, shipped))
                    print(
                        f"{name} batch {batch} x {args.length}, {granularity} {sparsity:.0%}: dense "
                        + ", ".join(f"{variant} {ms:.1f}" for variant, ms in timings.items())
                        + f" ms (fastest: {fastest}); "
                        + ", ".join(f"{format} {ms:.1f} ms" for format, ms in shipped.items())
                        + "; fastest dense / "
                        + ", ".join(f"{format} {timings[fastest] / ms:.2f}x" for format, ms in shipped.items())
                        + f"; kernels {kernel_counts(plans[sparsity])}",
                        flush=True,
                    )
                print(f"  break-even sparsity ({granularity}): {break_even(plans)}", flush=True)
        if not args.no_onnx and 0.9 in args.sparsities:
            print(f"{name}: ONNX Runtime, batch 1 x {args.length}: {onnx_race(dense, weights, rankings, args)}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}\n")
    if rows:
        print_table(rows, args.length)


def print_table(rows: list[tuple], length: int) -> None:
    """The figures as a Markdown table: every dense variant's time, the fastest, each export's, and its speedups."""
    variants, formats = list(rows[0][4]), list(rows[0][6])
    print(
        "| model | batch x length | granularity | sparsity | "
        + " | ".join(f"dense {variant}" for variant in variants + ["fastest"])
        + " | "
        + " | ".join(formats)
        + " | fp32 / sparse | "
        + " | ".join(f"**fastest dense / {format}**" for format in formats)
        + " |"
    )
    print("|---" * (4 + len(variants) + 2 + 2 * len(formats)) + "|")
    for name, batch, granularity, sparsity, timings, fastest, shipped in rows:
        best = timings[fastest]
        print(
            f"| {name} | {batch} x {length} | {granularity} | {sparsity:.0%} | "
            + " | ".join(f"{timings[variant]:.1f} ms" for variant in variants)
            + f" | {fastest} | "
            + " | ".join(f"{ms:.1f} ms" for ms in shipped.values())
            + f" | {timings['fp32'] / shipped['sparse']:.2f} | "
            + " | ".join(f"**{best / ms:.2f}**" for ms in shipped.values())
            + " |"
        )


def exported(dense: torch.nn.Module, mask: dict, tokens: int) -> tuple[dict[str, torch.nn.Module], dict]:
    """The masked model exported as each sparse format this machine runs (sparse-bf16 where bf16 is native), timed
    per layer on `tokens` rows, and the `sparse` export's kernel plan."""
    formats = ["sparse", "sparse-int8", *(["sparse-bf16"] if native_bf16("cpu") else [])]
    models, plans = {}, {}
    for format in formats:
        model = copy.deepcopy(dense)
        apply_mask(prunable_weights(model), mask)
        plans[format] = sparsify(model, mask, tokens, kernels_for(format))
        if format == "sparse-int8":
            quantize(model)
        models[format] = model
    return models, plans["sparse"]


class Free(torch.nn.Module):
    """A linear layer that costs nothing: zeros of the output's shape."""

    def __init__(self, out_features: int):
        super().__init__()
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(*x.shape[:-1], self.out_features)


def without_linear_cost(dense: torch.nn.Module, weights: dict) -> torch.nn.Module:
    """A copy of `dense` whose prunable linear layers are Free."""
    free = copy.deepcopy(dense)
    for name in weights:
        parent, _, child = name.rpartition(".")[0].rpartition(".")
        module = free.get_submodule(f"{parent}.{child}" if parent else child)
        if isinstance(module, torch.nn.Linear):
            setattr(free.get_submodule(parent) if parent else free, child, Free(module.out_features))
    return free


def kernel_counts(plan: dict) -> str:
    counts: dict[str, int] = {}
    for entry in plan.values():
        counts[entry["kernel"]] = counts.get(entry["kernel"], 0) + 1
    return ", ".join(f"{n} {kernel}" for kernel, n in sorted(counts.items()))


def break_even(plans: dict[float, dict]) -> str:
    """Per kernel, the lowest sparsity whose summed per-layer time beats dense's (from the exports' timings)."""
    kernels = sorted({kernel for plan in plans.values() for entry in plan.values() for kernel in entry["ms"]})
    found = {}
    for kernel in kernels:
        if kernel == "dense":
            continue
        for sparsity, plan in sorted(plans.items()):
            timed = [entry["ms"] for entry in plan.values() if kernel in entry["ms"]]
            if timed and len(timed) == len(plan) and sum(t[kernel] for t in timed) < sum(t["dense"] for t in timed):
                found[kernel] = f"{sparsity:.0%}"
                break
        else:
            found[kernel] = "never in the grid"
    return ", ".join(f"{kernel} {where}" for kernel, where in found.items())


def onnx_race(dense, weights, rankings, args) -> str:
    """Median ms of ONNX Runtime on the dense model and on a 90% weight ticket, one session each, in turns."""
    import onnxruntime

    pruned = copy.deepcopy(dense)
    mask = magnitude_prune(weights, ones_like(weights), 0.9, rankings, parse_granularity("weight"))
    apply_mask(prunable_weights(pruned), mask)
    inputs = {k: v.numpy() for k, v in text_inputs(dense.config.vocab_size, 1, args.length).items()}
    with tempfile.TemporaryDirectory() as folder:
        sessions = []
        for label, model in (("dense", dense), ("ticket", pruned)):
            path = Path(folder) / f"{label}.onnx"
            write_onnx(model, path)
            options = onnxruntime.SessionOptions()  # no spinning: an idle session's threads would slow the other's turn
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sessions.append(onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
        times = [[], []]
        for repeat in range(args.repeats * 3):
            for index in (repeat % 2, 1 - repeat % 2):
                start = time.perf_counter()
                sessions[index].run(None, inputs)
                times[index].append(time.perf_counter() - start)
    dense_ms, ticket_ms = (1e3 * statistics.median(t) for t in times)
    return f"dense {dense_ms:.1f} ms, 90% weight ticket {ticket_ms:.1f} ms, dense / ticket {dense_ms / ticket_ms:.2f}x"


if __name__ == "__main__":
    main()
