"""Masks ("tickets"): one bool tensor per prunable parameter, True where the weight is kept.

Masks live outside the model. They name parameters relative to the model's backbone
(e.g. ``encoder.layer.0.attention.self.query.weight``), so one ticket fits every head of the same base model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Collection, Iterator, Mapping

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .atomic import atomic_path
from .errors import TicketlabError

Mask = dict[str, torch.Tensor]
LOW_DENSITY = 0.01  # a matrix keeping less than this fraction of its weights is reported: it may silence a path


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


def save_mask(path: Path, mask: Mapping[str, torch.Tensor], metadata: Mapping[str, object]) -> None:
    """Write a mask as safetensors (bool tensors) with string metadata, atomically."""
    tensors = {name: m.detach().to("cpu", torch.bool).contiguous() for name, m in mask.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})


def load_mask(path: Path) -> tuple[Mask, dict[str, str]]:
    """Read a mask and its metadata; a clear error for a missing, corrupt or non-boolean file."""
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"mask file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            mask = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise TicketlabError(f"{path} is not a readable mask file ({_first_line(error)})") from None
    wrong = [name for name, m in mask.items() if m.dtype not in (torch.bool, torch.uint8)]
    if not mask or wrong:
        raise TicketlabError(f"{path} is not a mask file: {'no tensors' if not mask else f'{wrong[0]} is not boolean'}")
    return {name: m.bool() for name, m in mask.items()}, metadata


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
