"""Sparse linear kernels for CPU inference: y = x W^T + b with most of W zero.

Each kernel turns a masked weight into its own operands once (`prepare`) and then runs on inputs of shape (T, in):
`dense` (torch's GEMM on the zeros), `torch-csr` and `torch-bsr` (torch.sparse), and `compiled`, ticketlab's
block-sparse C kernel (kernels.c), built at first use with the machine's C compiler and OpenMP for this CPU (cached
per source, compiler and CPU features); where no compiler works or the cache cannot be written it is not offered, said
in one log line, and the others remain. Where the CPU runs bf16 natively, `bf16_kernels` adds bf16 versions of dense
and compiled (close to fp32, not exact). Inference only: no gradients flow through a sparse kernel.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from filelock import FileLock
from torch import nn
from torch.ao.quantization import quantize_dynamic

from ..atomic import atomic_path
from ..hardware import cpu_features, native_bf16

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.c")
BLOCK_ROWS = (4, 2, 1)  # the row counts kernels.c is specialised for
BLOCK_COLS = (8, 4, 2, 1)
SQUARE_BLOCKS = (16, 8, 4, 2)  # MKL's BSR product (torch-bsr) takes square blocks only
# every kernel ticketlab has, on any machine: an export's plan may name these only
KERNEL_NAMES = ("dense", "torch-csr", "torch-bsr", "compiled", "dense-bf16", "compiled-bf16", "int8")
Operands = dict[str, Any]  # what a kernel keeps of a layer: tensors, or a quantized module


@contextmanager
def torch_notices_silenced() -> Iterator[None]:
    """Without torch's notices on what these kernels use: sparse CSR/BSR "in beta", torch.ao's eager quantization
    "deprecated" (both still the CPU paths torch has for them), the ONNX exporter's progress."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


@dataclass(frozen=True)
class Kernel:
    """A way to run a masked linear layer: its operands from (weight, mask, bias), and the product from those."""

    name: str
    prepare: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], Operands]
    run: Callable[[Operands, torch.Tensor], torch.Tensor]
    fits: Callable[[torch.Tensor], bool] = lambda mask: True  # whether the kernel can run this mask


def is_block_constant(mask: torch.Tensor, rows: int, cols: int) -> bool:
    """Whether the mask divides into rows x cols blocks, each kept or pruned whole."""
    out, inp = mask.shape
    if out % rows or inp % cols:
        return False
    blocks = mask.reshape(out // rows, rows, inp // cols, cols)
    return bool((blocks.all(3).all(1) == blocks.any(3).any(1)).all())


def block_shape(mask: torch.Tensor) -> tuple[int, int]:
    """The largest (R, C), R in BLOCK_ROWS and C in BLOCK_COLS, whose R x C blocks the mask keeps or prunes whole."""
    return next((r, c) for r in BLOCK_ROWS for c in BLOCK_COLS if is_block_constant(mask, r, c))


def square_block(mask: torch.Tensor) -> int | None:
    """The largest size in SQUARE_BLOCKS whose square blocks the mask keeps or prunes whole."""
    return next((size for size in SQUARE_BLOCKS if is_block_constant(mask, size, size)), None)


def _prepare_dense(weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None) -> Operands:
    return {"weight": (weight * mask).contiguous(), **_bias(bias)}


def _run_dense(operands: Operands, x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.linear(x, operands["weight"], operands.get("bias"))


def _prepare_csr(weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None) -> Operands:
    with torch_notices_silenced():
        return {"weight": (weight * mask).to_sparse_csr(), **_bias(bias)}


def _prepare_bsr(weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None) -> Operands:
    size = square_block(mask)
    with torch_notices_silenced():
        return {"weight": (weight * mask).to_sparse_bsr((size, size)), **_bias(bias)}


def _run_torch_sparse(operands: Operands, x: torch.Tensor) -> torch.Tensor:
    y = (operands["weight"] @ x.t()).t()
    return y + operands["bias"] if "bias" in operands else y


def _prepare_compiled(weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None) -> Operands:
    rows, cols = block_shape(mask)
    with torch_notices_silenced():
        bsr = (weight * mask).to_sparse_bsr((rows, cols))
    return {
        "row_ptr": bsr.crow_indices().to(torch.int32),
        "cols": (bsr.col_indices() * cols).to(torch.int32),  # the first input column of each block
        "values": bsr.values().contiguous(),
        "shape": (*weight.shape, rows, cols),  # plain ints: read on every call
        **_bias(bias),
    }


def _prepare_compiled_bf16(weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None) -> Operands:
    rows, cols = block_shape(mask)
    cols += cols % 2  # weights go in pairs of one row: single weights are paired with a zero
    with torch_notices_silenced():
        bsr = (weight * mask).to_sparse_bsr((rows, cols))
    return {
        "row_ptr": bsr.crow_indices().to(torch.int32),
        "cols": (bsr.col_indices() * cols).to(torch.int32),
        "values": bsr.values().to(torch.bfloat16).contiguous(),
        "shape": (*weight.shape, rows, cols),
        "bf16": True,
        **_bias(bias),
    }


def _prepare_dense_bf16(weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None) -> Operands:
    return {"weight": (weight * mask).to(torch.bfloat16).contiguous(), **_bias(bias)}


def _run_dense_bf16(operands: Operands, x: torch.Tensor) -> torch.Tensor:
    y = torch.nn.functional.linear(x.to(torch.bfloat16), operands["weight"]).float()
    return y + operands["bias"] if "bias" in operands else y


def _run_compiled(operands: Operands, x: torch.Tensor) -> torch.Tensor:
    out, inp, rows, cols = operands["shape"]
    x = x.contiguous()
    y = torch.empty(x.shape[0], out)
    bias = operands.get("bias")
    status = compiled_library().ticketlab_bsr_linear(
        x.data_ptr(),
        x.shape[0],
        inp,
        out,
        operands["row_ptr"].data_ptr(),
        operands["cols"].data_ptr(),
        operands["values"].data_ptr(),
        rows,
        cols,
        None if bias is None else bias.data_ptr(),
        y.data_ptr(),
        torch.get_num_threads(),
        operands.get("bf16", False),
    )
    if status:
        raise MemoryError("the compiled sparse kernel could not allocate its buffers")
    return y


def _bias(bias: torch.Tensor | None) -> Operands:
    return {} if bias is None else {"bias": bias.detach().contiguous()}


def available_kernels() -> dict[str, Kernel]:
    """The kernels this machine can run, by name (`compiled` only where kernels.c builds)."""
    kernels = [
        Kernel("dense", _prepare_dense, _run_dense),
        Kernel("torch-csr", _prepare_csr, _run_torch_sparse),
        Kernel("torch-bsr", _prepare_bsr, _run_torch_sparse, lambda mask: square_block(mask) is not None),
    ]
    if compiled_library() is not None:
        kernels.append(Kernel("compiled", _prepare_compiled, _run_compiled))
    return {kernel.name: kernel for kernel in kernels}


def bf16_kernels() -> dict[str, Kernel]:
    """The bf16 kernels (bf16 weights and activations, fp32 sums: close to fp32, not exact), where the CPU runs bf16
    natively (none elsewhere): `dense-bf16` (torch's bf16 GEMM) and `compiled-bf16` (kernels.c's AVX512-BF16 path)."""
    if not native_bf16("cpu"):
        return {}
    kernels = [Kernel("dense-bf16", _prepare_dense_bf16, _run_dense_bf16)]
    library = compiled_library()
    if library is not None and library.ticketlab_has_bf16():
        kernels.append(Kernel("compiled-bf16", _prepare_compiled_bf16, _run_compiled, _even_columns))
    return {kernel.name: kernel for kernel in kernels}


def _even_columns(mask: torch.Tensor) -> bool:
    return mask.shape[1] % 2 == 0


def _prepare_int8(weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None) -> Operands:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    layer.weight.data = weight * mask
    if bias is not None:
        layer.bias.data = bias.detach().clone()
    with torch_notices_silenced():
        return {"module": quantize_dynamic(nn.Sequential(layer), {nn.Linear}, dtype=torch.qint8)[0]}


def _run_module(operands: Operands, x: torch.Tensor) -> torch.Tensor:
    return operands["module"](x)


INT8 = Kernel("int8", _prepare_int8, _run_module)  # torch.ao's dynamic INT8 linear on the zeros: not exact to fp32


def quantize(model: nn.Module) -> None:
    """Dynamic INT8 quantization of every nn.Linear left in the model (torch.ao), in place."""
    with torch_notices_silenced():
        quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


def cache_folder() -> Path:
    """Where built kernels are kept: $TICKETLAB_CACHE, else ~/.cache/ticketlab."""
    return Path(os.environ.get("TICKETLAB_CACHE", Path.home() / ".cache" / "ticketlab"))


FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")


def library_key(compiler: str) -> str:
    """What a built kernels.c depends on, digested: its source, the compiler and flags, Python, and this CPU's vector
    features (-march=native builds for them: a cache shared between machines keeps one library per CPU kind)."""
    parts = [compiler, *FLAGS, sys.version, platform.machine(), *cpu_features()]
    return hashlib.sha256(SOURCE.read_bytes() + " ".join(parts).encode()).hexdigest()[:16]


@cache
def compiled_library() -> ctypes.CDLL | None:
    """kernels.c built for this machine (once per library_key), or None, said in one log line, where no compiler
    works or the cache folder cannot be written."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.warning("no C compiler: the compiled sparse kernel is not offered")
        return None
    try:
        handle = ctypes.CDLL(str(_built_library(compiler)))
    except subprocess.CalledProcessError as error:
        reason = _first(error.stderr) or f"exit status {error.returncode}"
        log.warning("the compiled sparse kernel is not offered: %s fails on it: %s", compiler, reason)
        return None
    except OSError as error:
        log.warning("the compiled sparse kernel is not offered: %s", error)
        return None
    function = handle.ticketlab_bsr_linear
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    function.argtypes = [ptr, i64, i64, i64, ptr, ptr, ptr, i64, i64, ptr, ptr, ctypes.c_int, ctypes.c_int]
    function.restype = ctypes.c_int
    handle.ticketlab_has_bf16.restype = ctypes.c_int
    return handle


def _built_library(compiler: str) -> Path:
    """The path of kernels.c built by `compiler` in the cache folder, building it there first if need be."""
    library = cache_folder() / "kernels" / f"ticketlab_kernels_{library_key(compiler)}.so"
    library.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(library) + ".lock"):
        if not library.is_file():
            with atomic_path(library) as tmp:
                command = [compiler, *FLAGS, str(SOURCE), "-o", str(tmp)]
                subprocess.run(command, capture_output=True, check=True, text=True)
    return library


def _first(text: str) -> str:
    """The first line of a compiler's complaint (all of it goes to one log line)."""
    return next((line for line in text.splitlines() if line.strip()), "")
