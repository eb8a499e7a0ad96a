"""What this machine computes fast: its CPU's vector features, and whether it runs bf16 natively.

A leaf module (torch, the standard library and ticketlab.errors): training's precision and the export's dense
baselines both ask it. torch is imported where it is asked, so that the settings (ticketlab.config), and with them
the command's help, load without it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from .errors import TicketlabError

# the /proc/cpuinfo flags that decide how fast a matrix product runs (x86, then Arm)
VECTOR_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
    "sve2",
    "i8mm",
)
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# where /proc/cpuinfo is missing: what torch's dispatch level implies
CAPABILITY_FLAGS = {"AVX2": ("avx2", "fma"), "AVX512": ("avx2", "fma", "avx512f")}


@cache
def cpu_features() -> tuple[str, ...]:
    """This CPU's vector features among VECTOR_FLAGS, in that order (from /proc/cpuinfo, else torch)."""
    flags = _cpuinfo_flags()
    if not flags:
        import torch

        return CAPABILITY_FLAGS.get(torch.backends.cpu.get_cpu_capability(), ())
    return tuple(flag for flag in VECTOR_FLAGS if flag in flags)


@cache
def native_bf16(device: str = "auto") -> bool:
    """Whether bf16 runs natively on `device`: "cuda" (a GPU with bf16 units), "cpu" (AMX-BF16 or AVX512-BF16), or
    "auto": the GPU where there is one, else the CPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise TicketlabError(f"device must be auto, cpu or cuda, got {device!r}")
    import torch

    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return any(flag in cpu_features() for flag in NATIVE_BF16_FLAGS)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or "unknown"."""
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "unknown"


def _cpuinfo_flags() -> set[str]:
    """The first processor's feature flags (x86 "flags", Arm "Features"); empty where /proc/cpuinfo is missing."""
    for line in _cpuinfo_lines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
