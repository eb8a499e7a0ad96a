"""`--format compressed`: a ticket's pruned matrices stored as a bitmask and their kept values, read back exactly;
`compressed-int8`: the same with the kept values, and every other matrix (the embeddings, the classifier), in INT8
with a symmetric scale per row (`NAME.scale`, fp32; an unpruned matrix as `NAME.int8`), read back as fp32.

The file keeps compressed-tensors' sparse-bitmask layout: per pruned matrix NAME, `NAME.bitmask` (its mask packed
8 weights to a byte along the last axis, little-endian bit order), `NAME.compressed` (the kept values in row-major
order, in the model's dtype) and `NAME.shape`; every other tensor as save_pretrained wrote it. It is ticketlab's
own file all the same: compressed-tensors 0.20 has no sparse compressor left and transformers 5's quantizer reads
quantization only, so a sparse-bitmask checkpoint loads there with every compressed matrix newly initialised
(README). `ticketlab.load_sparse` reads it; a plain from_pretrained of the folder fails (no model.safetensors)
instead of drawing weights anew. The metadata lists the matrices and a CRC-32 of every tensor: a damaged file is
refused in one line, never loaded.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from ..atomic import write_tensors
from ..errors import TicketlabError
from ..masks import Mask
from ..models import backbone

COMPRESSED = "model.bitmask.safetensors"
DENSE = "model.safetensors"  # what save_pretrained writes, and the compressed file replaces
HEADER = "ticketlab.compressed"  # the metadata entry: layout, the compressed matrices, each tensor's CRC-32
LAYOUT = "sparse-bitmask/1"
PARTS = ("bitmask", "compressed", "shape")
INT8_LIMIT = 127  # symmetric INT8: -127..127, so that a row's scale maps its largest magnitude exactly


def compress_folder(folder: Path, model: nn.Module, mask: Mask, int8: bool = False) -> None:
    """Replace the dense weights save_pretrained wrote in `folder` by COMPRESSED, each matrix `mask` covers (named
    relative to `model`'s backbone, its pruned weights zero) as its bitmask and kept values; with `int8`, those values
    and every other floating-point matrix in INT8 with a scale per row."""
    if not mask:
        raise TicketlabError("the compressed format stores a ticket's pruned matrices, and this model has no mask")
    state = load_file(folder / DENSE)
    prefix = next(name for name, module in model.named_modules() if module is backbone(model))
    kept = {f"{prefix}.{name}" if prefix else name: m for name, m in mask.items()}
    if missing := sorted(kept.keys() - state.keys()):
        raise TicketlabError(f"the saved model lacks {len(missing)} matrices of the ticket, e.g. {missing[0]}")
    tensors: dict[str, torch.Tensor] = {}
    quantized = sorted(k for k, v in state.items() if int8 and k not in kept and v.is_floating_point() and v.dim() == 2)
    for key, value in state.items():
        if key in kept:
            tensors.update(_compress(key, value, kept[key], int8))
        else:
            tensors.update(_quantize(key, value) if key in quantized else {key: value})
    header = {
        "layout": LAYOUT,
        "matrices": sorted(kept),
        "quantized": quantized,
        "crc32": {key: _crc(t) for key, t in tensors.items()},
    }
    write_tensors(folder / COMPRESSED, tensors, {"format": "pt", HEADER: json.dumps(header, sort_keys=True)})
    (folder / DENSE).unlink()


def load_compressed(folder: Path, model_class: type) -> nn.Module:
    """The `model_class` model of `folder`'s config.json with the weights of its COMPRESSED file, in fp32."""
    path = folder / COMPRESSED
    state = read_compressed(path)
    config = model_class.config_class.from_pretrained(folder)
    model, info = model_class.from_pretrained(
        None, config=config, state_dict=state, dtype=torch.float32, output_loading_info=True
    )
    if wrong := {kind: sorted(keys)[:3] for kind, keys in info.items() if kind != "error_msgs" and keys}:
        raise TicketlabError(f"{path} does not fit the model of its config.json: {wrong}")
    return model


def read_compressed(path: Path) -> dict[str, torch.Tensor]:
    """The dense state dict a COMPRESSED file holds, every tensor checked against its CRC-32."""
    try:
        with safe_open(path, "pt") as file:
            header = json.loads((file.metadata() or {})[HEADER])
            tensors = {key: file.get_tensor(key) for key in file.keys()}
        if header["layout"] != LAYOUT:
            raise ValueError(f"layout {header['layout']!r}, not {LAYOUT}")
        crc = header["crc32"]
        if damaged := sorted(
            key for key in crc.keys() | tensors.keys() if key not in tensors or crc.get(key) != _crc(tensors[key])
        ):
            raise ValueError(f"{len(damaged)} tensors missing or failing their CRC-32, e.g. {damaged[0]}")
        for name in header["matrices"]:
            parts = [tensors.pop(f"{name}.{part}") for part in PARTS]
            tensors[name] = _expand(*parts, tensors.pop(f"{name}.scale", None))
        for name in header.get("quantized", []):
            tensors[name] = tensors.pop(f"{name}.int8").float() * tensors.pop(f"{name}.scale")
    except (OSError, SafetensorError, ValueError, KeyError, TypeError, RuntimeError) as error:
        line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TicketlabError(f"{path} is damaged or not a ticketlab compressed file: {line}") from None
    return tensors


def _compress(name: str, value: torch.Tensor, kept: torch.Tensor, int8: bool) -> dict[str, torch.Tensor]:
    kept = kept.to("cpu", torch.bool)
    bits = np.packbits(kept.numpy(), axis=-1, bitorder="little")
    scaled = _quantize(name, value) if int8 else {}
    values = scaled.pop(f"{name}.int8", value)
    return {
        f"{name}.bitmask": torch.from_numpy(bits),
        f"{name}.compressed": values[kept].contiguous(),
        f"{name}.shape": torch.tensor(value.shape, dtype=torch.int64),
        **scaled,
    }


def _quantize(name: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """A matrix as INT8 (`NAME.int8`) and a symmetric fp32 scale per row (`NAME.scale`, a column: rows x 1); a row
    of zeros keeps the scale 1."""
    scale = value.float().abs().amax(dim=-1, keepdim=True) / INT8_LIMIT
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    quantized = torch.round(value.float() / scale).clamp(-INT8_LIMIT, INT8_LIMIT).to(torch.int8)
    return {f"{name}.int8": quantized, f"{name}.scale": scale}


def _expand(bits: torch.Tensor, values: torch.Tensor, shape: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """The dense matrix of a bitmask and its kept values (INT8 ones times their row's `scale`, in fp32)."""
    size = [int(n) for n in shape.tolist()]
    if list(bits.shape) != [*size[:-1], -(-size[-1] // 8)]:
        raise ValueError(f"a bitmask of shape {list(bits.shape)} for a matrix of shape {size}")
    kept = torch.from_numpy(np.unpackbits(bits.numpy(), axis=-1, count=size[-1], bitorder="little").astype(bool))
    if int(kept.sum()) != values.numel():
        raise ValueError(f"a bitmask keeping {int(kept.sum())} weights beside {values.numel()} values")
    dense = values.new_zeros(size)
    dense[kept] = values
    return dense if scale is None else dense.float() * scale


def _crc(tensor: torch.Tensor) -> int:
    return zlib.crc32(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
