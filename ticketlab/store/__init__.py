"""The run store: run folders (runs.py), the one lifecycle of the units they hold (units.py), the seal that makes a
unit count and finds its damage (seal.py), and the lock that lets one process at a time write (lock.py)."""

from .lock import hold
from .runs import RunStore, checked_name, log_folder, run_folders, verify
from .seal import MARKER, damage, describe, file_digest, seal
from .units import Record, Unit, make

__all__ = [
    "MARKER",
    "Record",
    "RunStore",
    "Unit",
    "checked_name",
    "damage",
    "describe",
    "file_digest",
    "hold",
    "log_folder",
    "make",
    "run_folders",
    "seal",
    "verify",
]
