"""Inference latency of a structurally compacted model over the dense one, against the ideal the FLOPs give
(target: >= 0.9).

Same model, same inputs, one process: the dense backbone (AutoModel, eval, torch.inference_mode) and its compacted
copies take turns (the order rotating from one repeat to the next), each turn a few forward calls; the ratio of the
median latencies is the speedup, and dense FLOPs / compacted FLOPs (torch.utils.flop_counter on the same inputs,
attention counted through the eager path, whose FLOPs are the same as SDPA's) is the ideal. The structure is EarlyBERT's
default: round(0.33 * heads) heads pruned in every layer, 40% of the FFN neurons pruned globally (random scores from a
seeded generator, so the counts per layer are uneven as a global cut gives). A third arm pads each compacted FFN with
zero neurons to a multiple of 8 (same outputs). A forward on a single token measures the per-call cost that no pruning
removes.
Run: .venv/bin/python benchmarks/bench_compact_latency.py [--models splade-tiny minilm-l6] [--batches 1 32]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModel

from ticketlab.earlybert import compact, layer_shapes, scale_structures
from ticketlab.earlybert.draw import draw_structure
from ticketlab.export.latency import race
from ticketlab.models import load_pretrained, resolve_model

HEADS_PRUNED, FFN_PRUNED = 0.33, 0.4
PAD = 8  # FFN widths a multiple of 8 suit the AVX2 matrix kernels (see RESULTS.md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["splade-tiny", "minilm-l6"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--turn", type=float, default=0.3, help="seconds of forward calls per turn, at least one call")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; load average at start {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for name in args.models:
        dense = load_pretrained(resolve_model(name), AutoModel, seed=args.seed).eval()
        generator = torch.Generator().manual_seed(args.seed)
        scores = {
            f"{kind}.{i}": torch.rand(size, generator=generator)
            for i, (heads, neurons) in enumerate(layer_shapes(dense))
            for kind, size in (("heads", heads), ("ffn", neurons))
        }
        structure = draw_structure(scores, HEADS_PRUNED, FFN_PRUNED)
        small = compact(copy.deepcopy(dense), structure)
        padded = compact(copy.deepcopy(dense), structure, ffn_multiple_of=PAD)
        models = (dense, small, padded)
        check = make_inputs(dense.config.vocab_size, 2, args.length, generator)
        with torch.inference_mode():
            with scale_structures(dense, {k: v.float() for k, v in structure.items()}):
                masked = dense(**check).last_hidden_state
            errors = [(m(**check).last_hidden_state - masked).abs().max().item() for m in (small, padded)]
        params = [sum(p.numel() for p in m.encoder.parameters()) / 1e6 for m in models]
        print(
            f"\n{name}: (heads, FFN) per layer {layer_shapes(dense)[0]} -> {layer_shapes(small)}, padded FFN "
            f"{[n for _, n in layer_shapes(padded)]}; encoder parameters {params[0]:.2f}M -> {params[1]:.2f}M "
            f"({params[2]:.2f}M padded); "
            f"max |compact - masked| = {errors[0]:.1e} ({errors[1]:.1e} padded)"
        )
        single = race(models, make_inputs(dense.config.vocab_size, 1, 1, generator), args.repeats, args.turn)
        print(
            f"  a forward on 1 token (per-call overhead, and reading the weights once): "
            f"dense {single[0]:.2f} ms, compact {single[1]:.2f} ms, padded {single[2]:.2f} ms"
        )
        for batch in args.batches:
            inputs = make_inputs(dense.config.vocab_size, batch, args.length, generator)
            counted = [flops(m, inputs) for m in models]
            ideal = counted[0] / counted[1]
            ms = race(models, inputs, args.repeats, args.turn)
            speedups = (ms[0] / ms[1], ms[0] / ms[2])
            rows.append((name, batch, *ms, ideal, *speedups))
            print(
                f"  batch {batch:>2} x {args.length}: dense {ms[0]:.2f} ms; compact {ms[1]:.2f} ms, "
                f"speedup {speedups[0]:.3f}, "
                f"ideal {ideal:.3f} (dense / compact FLOPs), speedup / ideal {speedups[0] / ideal:.3f}; "
                f"padded {ms[2]:.2f} ms ({counted[2] / counted[1] - 1:+.1%} FLOPs), speedup {speedups[1]:.3f}, "
                f"speedup / ideal {speedups[1] / ideal:.3f}"
            )
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    print(
        f"\n| model | batch x length | dense | compact | ideal (FLOPs) | speedup | speedup / ideal "
        f"| compact, FFN padded to {PAD} | speedup | speedup / ideal |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, batch, dense_ms, small_ms, padded_ms, ideal, speedup, padded_speedup in rows:
        print(
            f"| {name} | {batch} x {args.length} | {dense_ms:.2f} ms | {small_ms:.2f} ms | {ideal:.3f} | {speedup:.3f} "
            f"| **{speedup / ideal:.3f}** | {padded_ms:.2f} ms | {padded_speedup:.3f} "
            f"| **{padded_speedup / ideal:.3f}** |"
        )


def make_inputs(vocab: int, batch: int, length: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.randint(1000, vocab, (batch, length), generator=generator)  # ordinary word pieces, no special tokens
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def flops(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """FLOPs of one forward; CPU SDPA kernels are not counted by FlopCounterMode, so attention goes the eager way."""
    original = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(**inputs)
    finally:
        model.set_attn_implementation(original)
    return counter.get_total_flops()


if __name__ == "__main__":
    main()
