"""Sealing: a unit's COMPLETE marker, written last, holds the SHA-256 digest of every file of the unit; `damage` finds
a file that is missing or no longer matches. `_write_marker` is the one writer of markers in ticketlab."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from ..atomic import write_json

MARKER = "COMPLETE"


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def unit_files(folder: Path) -> list[Path]:
    """The files a unit's marker vouches for: every file under `folder` but the marker, hidden files (temporaries
    of a write in progress) and checkpoints (`*.pt`: a cache of progress, removed once the unit is complete)."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.name != MARKER
        and path.suffix != ".pt"
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def seal(folder: Path, record: dict[str, Any], files: Iterable[Path] | None = None) -> None:
    """Write `folder`'s marker, last: `record` with the digest of each of `files` (default: every unit file of
    `folder`), named relative to the folder ("../rewind.safetensors" for a file of the run beside it)."""
    files = unit_files(folder) if files is None else files
    _write_marker(folder, {**record, "files": {os.path.relpath(path, folder): file_digest(path) for path in files}})


def forget(folder: Path, name: str) -> None:
    """Drop file `name` from a sealed unit's marker (the file is no longer needed); the other digests stay as
    recorded: no rehashing, and no damage laundered. An unreadable marker is left as it is: damage that the unit's
    next check reports."""
    try:
        record = json.loads((folder / MARKER).read_text())
        record["files"].pop(name, None)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return
    _write_marker(folder, record)


def _write_marker(folder: Path, record: dict[str, Any]) -> None:
    write_json(folder / MARKER, record)


def damage(folder: Path) -> dict[str, str]:
    """What is wrong with a sealed unit, by file name ({} when every file matches its digest)."""
    try:
        digests = json.loads((folder / MARKER).read_text())["files"]
        if not isinstance(digests, dict):
            raise TypeError("files is not a mapping")
    except FileNotFoundError:
        return {MARKER: "missing"}
    except (OSError, ValueError, TypeError, KeyError) as error:
        return {MARKER: f"unreadable ({type(error).__name__})"}
    problems = {}
    for name, expected in digests.items():
        path = folder / name
        if not within(path, folder.parent):
            problems[name] = "outside the run"
        elif not path.is_file():
            problems[name] = "missing"
        elif file_digest(path) != expected:
            problems[name] = "does not match its digest"
    return problems


def describe(problems: dict[str, str]) -> str:
    """Problems as a short phrase: "mask.safetensors does not match its digest (and 1 more)"."""
    (name, problem), *more = problems.items()
    return f"{name} {problem}" + (f" (and {len(more)} more)" if more else "")


def within(path: Path, root: Path) -> bool:
    """Whether `path` (links resolved) lies under `root`."""
    return path.resolve().is_relative_to(root.resolve())
