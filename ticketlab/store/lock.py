"""One process at a time writes a run (or a pre-trained model): a file lock that a second process finds taken."""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ..atomic import write_json
from ..errors import TicketlabError
from ..train.launch import accelerator


@contextmanager
def hold(lock_file: Path, what: Path) -> Iterator[None]:
    """Hold `what` for writing: a second process stops at once with one line naming the holder (written beside the
    lock). Re-entrant within a process (a find that runs controls, an EarlyBERT search beside its lottery run). Of a
    launch's processes the main one holds it, and the others follow it: only the main process writes the store."""
    if not accelerator().is_main_process:
        yield
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    holder = lock_file.with_name(lock_file.name + ".holder")
    lock = FileLock(lock_file, timeout=0, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise TicketlabError(
            f"{what} is being written by {_holder(holder)}; wait for it to finish or use another --out"
        ) from None
    try:
        if lock.lock_counter == 1:
            write_json(holder, f"process {os.getpid()} on {socket.gethostname()}")
        yield
    finally:
        if lock.lock_counter == 1:  # the outermost hold ends: the holder's name goes, while the lock still stands
            holder.unlink(missing_ok=True)
        lock.release()


def _holder(path: Path) -> str:
    """Who holds a run's lock, as the holder wrote it."""
    try:
        return str(json.loads(path.read_text()))
    except (OSError, ValueError):
        return "another process"
