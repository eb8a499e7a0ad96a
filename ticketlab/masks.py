"""Masks ("tickets"): one bool tensor per prunable parameter, True where the weight is kept.

Masks live outside the model. They name parameters relative to the model's backbone
(e.g. ``encoder.layer.0.attention.self.query.weight``), so one ticket fits every head of the same base model.

On disk a mask is a safetensors file holding, per matrix, the bytes of its Golomb-Rice coded positions (rice.py) as
an int8 tensor, and beside the caller's metadata one entry PACKING: per matrix its shape, kept count, which symbol is
coded (the rarer one: kept or pruned), the Rice parameter, the unary stream's length and a CRC-32 of all of these and
the bytes. Files of bool (or uint8) tensors without that entry, as ticketlab wrote before, load as they are; int8
is a dtype none of them has, so coded bytes whose entry a damaged header lost are refused, never read as a mask.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from pathlib import Path
from typing import Collection, Iterator, Mapping

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from . import rice
from .atomic import write_tensors
from .errors import TicketlabError

Mask = dict[str, torch.Tensor]
LOW_DENSITY = 0.01  # a matrix keeping less than this fraction of its weights is reported: it may silence a path
PACKING = "ticketlab.packing"  # the metadata entry saying how each matrix of a mask file is coded
PACKING_FORMAT = "golomb-rice/1"
_FIELDS = ("shape", "kept", "coded", "k", "unary_bits")  # a matrix's coding, which its CRC-32 covers with its bytes


def ones_like(weights: Mapping[str, torch.Tensor]) -> Mask:
    """The dense mask: every weight kept."""
    return {name: torch.ones_like(w, dtype=torch.bool, device="cpu") for name, w in weights.items()}


def sparsity(mask: Mapping[str, torch.Tensor]) -> float:
    """Fraction of the masked weights that are pruned."""
    total = sum(m.numel() for m in mask.values())
    kept = sum(int(m.sum()) for m in mask.values())
    return 1.0 - kept / total if total else 0.0


def nearly_empty(mask: Mapping[str, torch.Tensor], below: float = LOW_DENSITY) -> dict[str, float]:
    """The matrices that keep less than `below` of their weights, with the fraction each keeps."""
    kept = {name: float(m.float().mean()) for name, m in mask.items() if m.numel()}
    return {name: density for name, density in kept.items() if density < below}


def mask_digest(mask: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a mask's names, shapes and bits: equal masks, equal digests."""
    digest = hashlib.sha256()
    for name in sorted(mask):
        bits = mask[name].detach().to("cpu", torch.bool).numpy()
        digest.update(f"{name}{bits.shape}".encode())
        digest.update(np.packbits(bits).tobytes())
    return digest.hexdigest()


def iou(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Intersection over union of the kept weights, over the weights both masks have (1.0 when neither keeps any)."""
    common = a.keys() & b.keys()
    if not common:
        raise TicketlabError("the masks have no weight in common")
    both = either = 0
    for x, y in _aligned(a, b, common):
        both += np.count_nonzero(x & y)
        either += np.count_nonzero(x | y)
    return both / either if either else 1.0


def hamming(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Normalized Hamming distance: the fraction of entries on which two masks of the same layout disagree."""
    if a.keys() != b.keys():
        raise TicketlabError(f"the masks cover different weights: {sorted(a.keys() ^ b.keys())[0]}")
    differ = total = 0
    for x, y in _aligned(a, b, a.keys()):
        differ += int(np.count_nonzero(x != y))
        total += x.size
    return differ / total if total else 0.0


def _aligned(
    a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], names: Collection[str]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The two masks' matrices of each name, as numpy arrays (numpy counts bools many times faster than torch);
    a one-line error where their shapes disagree."""
    for name in names:
        if a[name].shape != b[name].shape:
            raise TicketlabError(
                f"the masks disagree on the shape of {name}: {tuple(a[name].shape)} and {tuple(b[name].shape)}"
            )
        yield a[name].numpy(), b[name].numpy()


def entropy_bound(mask: Mapping[str, torch.Tensor], per_matrix: bool = False) -> float:
    """The bytes that any coder of independent bits needs for this mask at least: N·H(s)/8, s its sparsity; with
    `per_matrix`, the sum of each matrix's N_i·H(s_i)/8 (lower where the matrices' sparsities differ)."""
    counts = [(np.count_nonzero(m.numpy()), m.numel()) for m in mask.values()]
    if not per_matrix:
        counts = [(sum(kept for kept, _ in counts), sum(total for _, total in counts))]
    return sum(total * _entropy(kept / total) / 8 for kept, total in counts if total)


def _entropy(p: float) -> float:
    """Binary entropy in bits."""
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def save_mask(path: Path, mask: Mapping[str, torch.Tensor], metadata: Mapping[str, object]) -> None:
    """Write a mask, packed (see the module's docstring), with string metadata, atomically."""
    tensors, matrices = {}, {}
    for name, m in mask.items():
        tensors[name], matrices[name] = _pack(name, m.detach().to("cpu", torch.bool).numpy())
    packing = json.dumps(  # sorted, as safetensors sorts the tensors: the same mask gives the same bytes
        {"format": PACKING_FORMAT, "matrices": matrices}, separators=(",", ":"), sort_keys=True
    )
    write_tensors(path, tensors, {**{k: str(v) for k, v in metadata.items()}, PACKING: packing})


def load_mask(path: Path) -> tuple[Mask, dict[str, str]]:
    """Read a mask and the caller's metadata; a one-line error for a missing, corrupt, damaged or non-boolean file."""
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"mask file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            stored = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise TicketlabError(f"{path} is not a readable mask file ({_first_line(error)})") from None
    if not stored:
        raise TicketlabError(f"{path} is not a mask file: no tensors")
    packing = metadata.pop(PACKING, None)
    if packing is not None:
        try:
            return _unpack_all(stored, packing), metadata
        except (ValueError, TypeError) as error:
            raise TicketlabError(f"{path} is a damaged mask file: {_first_line(error)}") from None
    wrong = [name for name, m in stored.items() if m.dtype not in (torch.bool, torch.uint8)]  # as masks were before
    if wrong:
        raise TicketlabError(f"{path} is not a mask file: {wrong[0]} is not boolean")
    return {name: m.bool() for name, m in stored.items()}, metadata


def _pack(name: str, matrix: np.ndarray) -> tuple[torch.Tensor, dict[str, object]]:
    """A matrix's coded bytes and their packing entry. The rarer symbol is coded: at 90% sparsity the kept weights'
    positions, at 10% the pruned ones'; a matrix all kept or all pruned codes no position (zero bytes)."""
    kept = int(np.count_nonzero(matrix))
    coded = "kept" if 2 * kept <= matrix.size else "pruned"
    data, k, unary_bits = rice.encode(matrix if coded == "kept" else ~matrix)
    entry = dict(zip(_FIELDS, (list(matrix.shape), kept, coded, k, unary_bits)))
    return torch.from_numpy(data.view(np.int8)), {**entry, "crc32": _crc(name, entry, data)}


def _unpack_all(stored: Mapping[str, torch.Tensor], packing: str) -> Mask:
    """The bool matrices of a packed file; ValueError or TypeError, in one line naming the matrix, where anything in
    the file disagrees with its packing entry (its CRC-32, the length of a stream, the number of positions)."""
    record = json.loads(packing)
    if not isinstance(record, dict) or record.get("format") != PACKING_FORMAT:
        raise ValueError(f"its {PACKING} entry is not {PACKING_FORMAT}")
    matrices = record.get("matrices")
    if not isinstance(matrices, dict) or matrices.keys() != stored.keys():
        raise ValueError(f"its {PACKING} entry does not list the matrices it holds")
    return {name: _unpack(name, stored[name], matrices[name]) for name in stored}


def _unpack(name: str, data: torch.Tensor, entry: object) -> torch.Tensor:
    """One matrix of a packed file, checked against its packing entry (see `_unpack_all`)."""
    if not isinstance(entry, dict) or entry.keys() != {*_FIELDS, "crc32"}:
        raise ValueError(f"{name}: its packing entry is malformed")
    if data.dtype != torch.int8 or data.dim() != 1:
        raise ValueError(f"{name}: its coded bytes are a {data.dtype} tensor of shape {tuple(data.shape)}")
    data = data.numpy().view(np.uint8)
    if _crc(name, {field: entry[field] for field in _FIELDS}, data) != entry["crc32"]:
        raise ValueError(f"{name}: its CRC-32 does not match (a changed byte, or a changed packing entry)")
    shape, kept, coded, k, unary_bits = (entry[field] for field in _FIELDS)
    numbers = (*shape, kept, k, unary_bits) if isinstance(shape, list) else (shape,)
    if not all(type(n) is int and n >= 0 for n in numbers) or coded not in ("kept", "pruned"):
        raise ValueError(f"{name}: its packing entry holds values out of range")
    size = math.prod(shape)
    try:
        flat = rice.decode(data, size, kept if coded == "kept" else size - kept, k, unary_bits)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    return torch.from_numpy(flat if coded == "kept" else ~flat).reshape(shape)


def _crc(name: str, entry: Mapping[str, object], data: np.ndarray) -> int:
    """CRC-32 of a matrix's name, packing entry and coded bytes: any bit flipped in any of them shows."""
    return zlib.crc32(data, zlib.crc32(json.dumps([name, entry], sort_keys=True).encode()))


def fit_mask(mask: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor], required: Collection[str]) -> Mask:
    """The mask for exactly these weights; raises unless it covers every `required` weight with its shape.

    Outside `required` (the pooler after the layer stack), a weight the mask lacks stays dense and a mask entry
    the model lacks is dropped: a ticket found on MLM (no pooler) fits a classifier, and the other way round.
    """
    missing = sorted(set(required) - set(mask))
    extra = sorted(set(mask) - set(weights) - set(_outside(mask, required)))
    if extra:
        raise TicketlabError(
            f"mask does not fit this model: it has no prunable weight {extra[0]!r} ({len(extra)} such names)"
        )
    if missing:
        raise TicketlabError(
            f"mask does not fit this model: no mask for {missing[0]!r} ({len(missing)} weights uncovered)"
        )
    fitted = {
        name: mask[name] if name in mask else torch.ones_like(w, dtype=torch.bool, device="cpu")
        for name, w in weights.items()
    }
    for name, w in weights.items():
        if tuple(fitted[name].shape) != tuple(w.shape):
            raise TicketlabError(
                f"mask does not fit this model: {name} is {tuple(fitted[name].shape)} in the mask, "
                f"{tuple(w.shape)} in the model"
            )
    return fitted


def _outside(mask: Mapping[str, torch.Tensor], required: Collection[str]) -> list[str]:
    """Mask entries that name no required weight and sit outside the required weights' modules."""
    roots = {name.split(".")[0] for name in required}
    return [name for name in mask if name.split(".")[0] not in roots]


@torch.no_grad()
def apply_mask(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights in place."""
    for name, w in weights.items():
        w.mul_(mask[name].to(w.device, w.dtype))


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
