"""The cost count: FLOPs of a forward pass, as torch's flop counter finds them, and the estimate of a training's."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .batches import Draws, Forward, call_model

FLOPS_ESTIMATE = "3 x forward_flops (backward: twice the forward) x steps; dense: pruned weights are multiplied too"
# scaled_dot_product_attention's CPU kernel: torch's counter has no formula for it, so attention would count nothing
CPU_ATTENTION = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def forward_flops(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    forward: Forward = call_model,
    draws: Draws | None = None,
) -> int:
    """The FLOPs of one pass of `batch` through `forward` (with `draws` as its data randomness) that
    torch.utils.flop_counter counts: matrix products, convolutions, attention; elementwise work is not counted.

    In eval mode, without gradients and with the global random state forked: no dropout draws a number and no
    BatchNorm statistics or MoCo queue move, so the run trains as it would without the count, and the count does not
    depend on where it resumed. The products' shapes, all that is counted, are those of training mode."""
    was_training = model.training
    model.eval()
    try:
        with (
            torch.random.fork_rng(devices=[]),
            torch.no_grad(),
            FlopCounterMode(display=False, custom_mapping={CPU_ATTENTION: _attention_flops}) as counter,
        ):
            forward(model, batch, draws)
    finally:
        model.train(was_training)
    return counter.get_total_flops()


def _attention_flops(query: torch.Size, key: torch.Size, value: torch.Size, *args, out_shape=None, **kwargs) -> int:
    """The attention scores' and the context's products, as torch counts them for the GPU kernels."""
    return sdpa_flop_count(query, key, value)
