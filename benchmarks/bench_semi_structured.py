"""GPU only: whole-encoder latency of a 2:4 ticket through torch's semi-structured sparse tensors, dense / 2:4.

BERT encoders of minilm-l6's and BERT-base's widths (random weights: latency depends on shapes only), every prunable
linear layer pruned 2:4 by magnitude (ticketlab.pruning, granularity 2:4 at 50%) and converted with
torch.sparse.to_sparse_semi_structured (cuSPARSELt / CUTLASS), bf16, batch x 128 tokens; dense and 2:4 copies in
turns, CUDA-synchronized, medians.
Run: python benchmarks/bench_semi_structured.py [--batches 1 32 128]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from transformers import BertConfig, BertModel

from ticketlab.masks import ones_like
from ticketlab.pruning import magnitude_prune, parse_granularity

WIDTHS = {"minilm-l6 width": (384, 6, 12, 1536), "bert-base width": (768, 12, 12, 3072)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32, 128])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    from torch.sparse import to_sparse_semi_structured

    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| encoder | batch x length | dense | 2:4 | **dense / 2:4** |\n|---|---|---|---|---|")
    for label, (hidden, layers, heads, intermediate) in WIDTHS.items():
        config = BertConfig(
            hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=intermediate
        )
        torch.manual_seed(0)
        dense = BertModel(config, add_pooling_layer=False).cuda().to(torch.bfloat16).eval()
        linears = {n: m for n, m in dense.named_modules() if isinstance(m, torch.nn.Linear)}
        weights = {n: m.weight for n, m in linears.items()}
        mask = magnitude_prune(weights, ones_like(weights), 0.5, None, parse_granularity("2:4"))
        sparse = copy.deepcopy(dense)
        for name, module in sparse.named_modules():
            if isinstance(module, torch.nn.Linear):
                pruned = module.weight.detach() * mask[name].to(module.weight.device)
                module.weight = torch.nn.Parameter(to_sparse_semi_structured(pruned), requires_grad=False)
        for batch in args.batches:
            ids = torch.randint(1000, config.vocab_size, (batch, 128), device="cuda")
            with torch.inference_mode():
                error = (sparse(input_ids=ids)[0].float() - masked(dense, mask)(input_ids=ids)[0].float()).abs().max()
                times = race([dense, sparse], ids, args.repeats)
            print(
                f"| {label} | {batch} x 128 | {times[0]:.3f} ms | {times[1]:.3f} ms | **{times[0] / times[1]:.2f}** |"
                f" max abs error vs masked dense {error:.1e}"
            )


_masked: dict[int, torch.nn.Module] = {}


def masked(dense: torch.nn.Module, mask: dict) -> torch.nn.Module:
    """The dense model with the 2:4 zeros baked in (the reference for the semi-structured outputs)."""
    if id(dense) not in _masked:
        model = copy.deepcopy(dense)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.data *= mask[name].to(module.weight.device)
        _masked[id(dense)] = model
    return _masked[id(dense)]


def race(models, ids, repeats: int) -> list[float]:
    """Median ms per forward of each model, in alternating turns, CUDA-synchronized."""
    for model in models:
        for _ in range(3):
            model(input_ids=ids)
    times = [[] for _ in models]
    for repeat in range(repeats):
        for index in (repeat % 2, 1 - repeat % 2):
            torch.cuda.synchronize()
            start = time.perf_counter()
            models[index](input_ids=ids)
            torch.cuda.synchronize()
            times[index].append(1e3 * (time.perf_counter() - start))
    return [statistics.median(t) for t in times]


if __name__ == "__main__":
    main()
