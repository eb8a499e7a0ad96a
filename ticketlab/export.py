"""Tickets out of ticketlab: a Hugging Face model folder with the pruned weights zeroed, the mask beside it."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModel

from .api import apply_ticket, read_ticket
from .atomic import atomic_path
from .errors import TicketlabError
from .masks import save_mask
from .models import is_resnet, load_pretrained, load_tokenizer, resolve_model


def export_pruned(ticket: str | Path, model: str, out: str | Path) -> Path:
    """Write `model`'s backbone with the ticket (a mask file, a run folder, or "RUN:ROUND") applied to `out`,
    in the save_pretrained layout, with the tokenizer (a text model's) and mask.safetensors beside the weights.
    Parts the checkpoint lacks (splade-tiny's pooler) are newly initialised from the ticket's seed."""
    out = Path(out)
    if out.exists():
        raise TicketlabError(f"{out} exists already; choose a new folder")
    mask, metadata = read_ticket(ticket)
    model_path = resolve_model(model)
    pruned = apply_ticket(load_pretrained(model_path, AutoModel, seed=int(metadata.get("seed", 0))), mask)
    with atomic_path(out) as tmp:
        pruned.save_pretrained(tmp)
        if not is_resnet(model_path):
            load_tokenizer(model_path).save_pretrained(tmp)
        save_mask(tmp / "mask.safetensors", mask, metadata)
    return out
