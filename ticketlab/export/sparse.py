"""A masked model whose pruned linear layers run through the fastest kernel for their pattern on this machine.

`sparsify` times every kernel that fits each pruned layer on the deployment shape (tokens = batch x length) and
swaps the layer for a `SparseLinear` running the fastest one (dense where no sparse kernel beats it); the choice
and every time are returned for the export folder, and `apply_plan` rebuilds the same model from them on load.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import Counter
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..errors import TicketlabError
from ..models import backbone
from .kernels import KERNEL_NAMES, Kernel, Operands, available_kernels

Timer = Callable[[Kernel, Operands, torch.Tensor], float]
log = logging.getLogger(__name__)


class SparseLinear(nn.Module):
    """A linear layer (fp32, CPU, inference) computed by one kernel of ticketlab.export.kernels."""

    def __init__(self, kernel: Kernel, operands: Operands, in_features: int, out_features: int):
        super().__init__()
        self.kernel, self.operands = kernel, operands
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise TicketlabError(f"a sparse export runs in fp32 on the CPU, got {x.dtype} on {x.device}")
        with torch.no_grad():
            y = self.kernel.run(self.operands, x.reshape(-1, self.in_features))
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel.name}"


def pruned_linears(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> dict[str, tuple[nn.Linear, torch.Tensor]]:
    """The model's linear layers a mask prunes, by module name relative to the backbone, with their masks."""
    layers = {}
    for name, kept in mask.items():
        module_name, _, parameter = name.rpartition(".")
        module = backbone(model).get_submodule(module_name) if module_name else None
        if parameter == "weight" and isinstance(module, nn.Linear) and not bool(kept.all()):
            layers[module_name] = (module, kept)
    return layers


def median_time(kernel: Kernel, operands: Operands, x: torch.Tensor, repeats: int = 5) -> float:
    """Median seconds of one call, after a warm-up call."""
    kernel.run(operands, x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        kernel.run(operands, x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def sparsify(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor],
    tokens: int,
    kernels: Mapping[str, Kernel] | None = None,
    timer: Timer = median_time,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Swap each pruned linear layer for the kernel that runs it fastest on `tokens` rows of random input.

    Returns the plan: per layer its kernel, the milliseconds of every kernel tried, its density and shape."""
    kernels = available_kernels() if kernels is None else kernels
    generator = torch.Generator().manual_seed(seed)
    plan = {}
    for name, (layer, kept) in pruned_linears(model, mask).items():
        x = torch.randn(tokens, layer.in_features, generator=generator)
        prepared = {k.name: (k, k.prepare(layer.weight, kept, layer.bias)) for k in kernels.values() if k.fits(kept)}
        times = {label: timer(kernel, operands, x) for label, (kernel, operands) in prepared.items()}
        best = min(times, key=times.get)
        if best != "dense":  # a dense pick keeps the model's own layer (its zeros are baked in): no extra call
            _swap(model, name, SparseLinear(*prepared[best], layer.in_features, layer.out_features))
        plan[name] = {
            "kernel": best,
            "ms": {label: round(1e3 * seconds, 4) for label, seconds in times.items()},
            "density": float(kept.float().mean()),
            "shape": list(kept.shape),
        }
    return plan


@torch.no_grad()
def apply_plan(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor],
    plan: Mapping[str, Mapping[str, Any]],
    kernels: Mapping[str, Kernel] | None = None,
) -> None:
    """Rebuild a sparsified model from its plan: each layer gets its recorded kernel, or, where this machine lacks
    it (`compiled` without a C compiler), the fastest of the recorded times among the kernels it has, said in one log
    line. A kernel ticketlab does not have (KERNEL_NAMES) is refused in one line."""
    kernels = available_kernels() if kernels is None else kernels
    layers = pruned_linears(model, mask)
    replaced: Counter[str] = Counter()
    for name, entry in plan.items():
        if name not in layers:
            raise TicketlabError(f"the export's kernel plan names {name!r}, which its mask does not prune")
        layer, kept = layers[name]
        ranked = sorted(entry["ms"], key=entry["ms"].get)
        if unknown := [k for k in [entry["kernel"], *ranked] if k not in KERNEL_NAMES]:
            raise TicketlabError(
                f"the export's kernel plan runs {name} with {unknown[0]!r}, a kernel ticketlab does not have; "
                f"known: {', '.join(KERNEL_NAMES)}"
            )
        label = next(k for k in [entry["kernel"], *ranked, "dense"] if k in kernels and kernels[k].fits(kept))
        replaced[entry["kernel"]] += label != entry["kernel"]
        if label != "dense":
            kernel = kernels[label]
            _swap(model, name, SparseLinear(kernel, kernel.prepare(layer.weight, kept, layer.bias), *_sizes(layer)))
    if missing := {kernel: count for kernel, count in replaced.items() if count}:
        log.warning(
            "kernels recorded but not available on this machine: %s; those layers run the fastest recorded one it has",
            ", ".join(f"{kernel} ({count} layers)" for kernel, count in missing.items()),
        )


def _sizes(layer: nn.Linear) -> tuple[int, int]:
    return layer.in_features, layer.out_features


def _swap(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(backbone(model).get_submodule(parent_name), child, module)
