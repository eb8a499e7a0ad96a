"""Packed mask files: bytes against the entropy bound, encode and decode seconds (targets: at most 1.05 x the bound at
90% sparsity, header included; decoded in under 1 s for a BERT-base-size ticket).

Masks: a BERT-base-size i.i.d. random mask (85.5M weights: 12 layers x (4 x 768x768 + 2 x 768x3072) and the pooler,
under BERT's parameter names) and the embedded minilm-l6's magnitude ticket (one ranking over the layers, the pooler
alone), at 50, 70, 90 and 95% sparsity. Bound: N·H(s)/8 bytes, s the mask's sparsity; per-matrix: sum of N_i·H(s_i)/8.
Encode: `save_mask` to a file; decode: `load_mask` of it (page cache warm); medians over repeats. Beside ticketlab's
file, the same mask as np.packbits under lzma -9e, zlib -9 and bz2 -9 (their bytes alone, no header) / the bound.
Run: make bench   (or .venv/bin/python benchmarks/bench_mask_packing.py [--repeats 5] [--no-alternatives])
"""

from __future__ import annotations

import argparse
import bz2
import lzma
import platform
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from ticketlab.masks import Mask, entropy_bound, load_mask, ones_like, save_mask, sparsity
from ticketlab.models import layer_stack_weights, load_pretrained, prunable_weights, resolve_model
from ticketlab.pruning import magnitude_prune, scope_rankings

LEVELS = (0.5, 0.7, 0.9, 0.95)
BERT_BASE_LAYER = {
    "attention.self.query.weight": (768, 768),
    "attention.self.key.weight": (768, 768),
    "attention.self.value.weight": (768, 768),
    "attention.output.dense.weight": (768, 768),
    "intermediate.dense.weight": (3072, 768),
    "output.dense.weight": (768, 3072),
}
ALTERNATIVES = {
    "lzma -9e": lambda data: lzma.compress(data, preset=9 | lzma.PRESET_EXTREME),
    "zlib -9": lambda data: zlib.compress(data, 9),
    "bz2 -9": lambda data: bz2.compress(data, 9),
}


def bert_base_mask(level: float, seed: int = 0) -> Mask:
    """Each weight kept with probability 1 - level, independently."""
    rng = np.random.default_rng(seed)
    shapes = {f"encoder.layer.{i}.{name}": shape for i in range(12) for name, shape in BERT_BASE_LAYER.items()}
    shapes["pooler.dense.weight"] = (768, 768)
    return {name: torch.from_numpy(rng.random(shape) >= level) for name, shape in shapes.items()}


def minilm_masks() -> dict[float, Mask]:
    """minilm-l6's magnitude tickets of the pre-trained weights, ranked as `ticketlab find` ranks by default."""
    model = load_pretrained(resolve_model("minilm-l6"), AutoModel, seed=0)
    weights = prunable_weights(model)
    rankings = scope_rankings("layers", list(weights), layer_stack_weights(model))
    return {level: magnitude_prune(weights, ones_like(weights), level, rankings) for level in LEVELS}


def measure(mask: Mask, repeats: int, alternatives: bool, folder: Path) -> dict[str, float]:
    path = folder / "mask.safetensors"
    encode, decode = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        save_mask(path, mask, {"seed": 0})
        encode.append(time.perf_counter() - start)
        start = time.perf_counter()
        loaded, _ = load_mask(path)
        decode.append(time.perf_counter() - start)
    assert all(torch.equal(loaded[name], m) for name, m in mask.items())
    bound = entropy_bound(mask)
    figures = {
        "bytes": path.stat().st_size,
        "header": 8 + int.from_bytes(path.read_bytes()[:8], "little"),  # safetensors: its length, then JSON
        "bound": bound,
        "per_matrix": entropy_bound(mask, per_matrix=True),
        "encode_s": statistics.median(encode),
        "decode_s": statistics.median(decode),
    }
    if alternatives:
        packed = b"".join(np.packbits(m.numpy()).tobytes() for m in mask.values())
        figures |= {name: len(compress(packed)) / bound for name, compress in ALTERNATIVES.items()}
    return figures


def row(label: str, mask: Mask, args: argparse.Namespace, folder: Path) -> str:
    """One table row: the figures of `measure`, as RESULTS.md shows them."""
    f = measure(mask, args.repeats, args.alternatives, folder)
    cells = [
        label,
        f"{sparsity(mask):.0%}",
        f"{sum(m.numel() for m in mask.values()):,}",
        f"{f['bytes']:,}",
        f"{f['header']:,}",
        f"**{f['bytes'] / f['bound']:.4f}**",
        f"{f['bytes'] / f['per_matrix']:.4f}",
        f"{f['encode_s']:.2f}",
        f"**{f['decode_s']:.2f}**",
        *(f"{f[name]:.3f}" for name in ALTERNATIVES if name in f),
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-alternatives", dest="alternatives", action="store_false")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}, torch {torch.__version__}; "
        f"medians of {args.repeats} repeats"
    )
    columns = ["mask", "sparsity", "weights", "file bytes", "of which header", "/ bound", "/ per-matrix bound"]
    columns += ["encode s", "decode s"]
    columns += list(ALTERNATIVES) if args.alternatives else []
    print("| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|")
    with tempfile.TemporaryDirectory() as folder:
        for level in LEVELS:
            print(row("BERT-base-size i.i.d.", bert_base_mask(level), args, Path(folder)), flush=True)
        for mask in minilm_masks().values():
            print(row("minilm-l6 magnitude", mask, args, Path(folder)), flush=True)


if __name__ == "__main__":
    main()
