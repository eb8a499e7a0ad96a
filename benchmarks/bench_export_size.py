"""What an export weighs on disk (README's "Shipping a ticket" table): a 90% ticket of minilm-l6 (magnitude per matrix
on the pre-trained weights, no training) exported in each FORMAT, each export's `bytes` and folder, the pruned
matrices' share of the compressed file, and the largest |difference| of each compressed export's output from the
dense export's (the backbone's last hidden state: an export of a mask file is the pre-trained backbone).

Run: .venv/bin/python benchmarks/bench_export_size.py [--formats dense compressed compressed-int8 onnx]
[--out /tmp/export-size]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoModel

from ticketlab.export import export_ticket, load_sparse
from ticketlab.export.compressed import COMPRESSED, PARTS
from ticketlab.masks import ones_like, save_mask
from ticketlab.models import load_pretrained, prunable_weights, resolve_model
from ticketlab.pruning import magnitude_prune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", nargs="+", default=["dense", "compressed", "compressed-int8", "onnx"])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=Path("/tmp/export-size"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    model = load_pretrained(resolve_model("minilm-l6"), AutoModel, seed=0)
    weights = {name: weight.detach() for name, weight in prunable_weights(model).items()}
    mask = magnitude_prune(weights, ones_like(weights), args.sparsity, rankings=[[name] for name in weights])
    save_mask(args.out / "mask.safetensors", mask, {"base_model": "minilm-l6", "seed": "0"})
    for format in args.formats:
        folder = export_ticket(args.out / "mask.safetensors", args.out / format, format=format)
        size = json.loads((folder / "export.json").read_text())["bytes"]
        whole = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        print(
            f"{format}: model {size['model']:,} bytes, dense {size['dense']:,} ({size['model'] / size['dense']:.3f}x), "
            f"folder {whole:,}"
        )
    if "compressed" in args.formats:
        with safe_open(args.out / "compressed" / COMPRESSED, "pt") as file:
            parts = [file.get_tensor(f"{name}.{part}") for name in mask for part in PARTS]
        matrices = sum(part.numel() * part.element_size() for part in parts)
        dense = 4 * sum(m.numel() for m in mask.values())
        print(f"pruned matrices: {dense:,} bytes dense, {matrices:,} compressed ({matrices / dense:.4f}x)")
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (4, 64), generator=generator)
    for format in [f for f in ("compressed", "compressed-int8") if {"dense", f} <= set(args.formats)]:
        with torch.no_grad():
            a = AutoModel.from_pretrained(args.out / "dense", dtype=torch.float32).eval()(input_ids=ids)
            b = load_sparse(args.out / format)(input_ids=ids)
        print(f"max |{format} - dense| {float((a.last_hidden_state - b.last_hidden_state).abs().max()):.3g}")


if __name__ == "__main__":
    main()
