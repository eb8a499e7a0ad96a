"""Write-then-rename, so a killed process never leaves a half-written file under its real name; the writers built on
it give the same bytes for the same content (JSON with its keys sorted, safetensors with its metadata sorted)."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors.torch import save_file

from .errors import TicketlabError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write (a file or a folder); move it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    remove(tmp)
    try:
        yield tmp
        if tmp.is_dir():
            remove(path)  # a folder cannot be replaced in one rename
        os.replace(tmp, path)
    finally:
        remove(tmp)


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Write a safetensors file atomically, its metadata in sorted order: safetensors (0.8) writes the metadata from
    a Rust HashMap, in a new order each time (safetensors issue #584), so equal content gave different bytes."""
    with atomic_path(path) as tmp:
        save_file(dict(tensors), str(tmp), metadata=None if metadata is None else dict(metadata))
        if metadata:
            _sort_metadata(tmp)


def _sort_metadata(path: Path) -> None:
    """Rewrite a safetensors file's header in place, its metadata keys sorted: the same JSON reordered (escaped as
    safetensors escapes it), so the same length; trailing spaces, which the format allows, fill any room left."""
    with open(path, "r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:
            raise TicketlabError(f"{path}: its sorted safetensors header outgrows the {size} bytes written")
        handle.seek(8)
        handle.write(text.ljust(size))


def remove(path: Path) -> None:
    """Delete a file or folder if it exists (one that goes meanwhile is gone as asked)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
