"""A text model as ONNX (torch's exporter), checked against the model on ONNX Runtime.

ONNX Runtime multiplies the zeros of a ticket like any other weight: its MatMul kernels are dense, so an unstructured
or block ticket runs exactly as fast as the dense model there (benchmarks/RESULTS.md); a compacted EarlyBERT model
is smaller, and faster, in ONNX as in torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import TicketlabError

INPUTS = ("input_ids", "attention_mask")


def write_onnx(model: nn.Module, path: Path, length: int = 16) -> float:
    """Export `model` (a text model taking input_ids and attention_mask) to `path` with dynamic batch and length;
    returns the largest |ONNX Runtime - torch| of the first output on a random batch."""
    try:
        import onnxruntime  # the optional extra ticketlab[onnx]: only this format needs it
        import onnxscript  # noqa: F401  torch's ONNX exporter needs it
    except ImportError as error:
        raise TicketlabError(f"the onnx format needs pip install 'ticketlab[onnx]' ({error})") from None

    if getattr(model, "main_input_name", "input_ids") != "input_ids":
        raise TicketlabError("the onnx format covers text models (input_ids, attention_mask)")
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2, length), generator=generator)
    attention = torch.ones_like(ids)
    batch, tokens = torch.export.Dim("batch"), torch.export.Dim("length")
    dims = {name: {0: batch, 1: tokens} for name in INPUTS}
    torch.onnx.export(
        model, (), str(path), kwargs=dict(zip(INPUTS, (ids, attention))), dynamic_shapes=dims, verbose=False
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ours,) = session.run(
        [session.get_outputs()[0].name], {"input_ids": ids.numpy(), "attention_mask": attention.numpy()}
    )
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=attention)[0]
    return float(np.abs(ours - reference.numpy()).max())
