"""Write-then-rename, so a killed process never leaves a half-written file under its real name."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


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


def remove(path: Path) -> None:
    """Delete a file or folder if it exists (one that goes meanwhile is gone as asked)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
