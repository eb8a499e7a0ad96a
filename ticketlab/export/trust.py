"""An export folder's seal: its marker, written last (ticketlab.store.seal), holds the SHA-256 of every file of the
folder. `check_export` refuses a damaged folder in one line naming the file, before anything of it is read; a folder
exported before exports were sealed has no marker and loads with a one-line warning (README: "Shipping a ticket")."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import TicketlabError
from ..store.seal import MARKER, damage, describe

RECORD = "export.json"
UNSEALED = "missing: exported before ticketlab sealed its exports, so nothing vouches for its files"

log = logging.getLogger(__name__)


def is_export(path: Path) -> bool:
    """Whether `path` is an export folder: its record, or a marker at its top (a run keeps its markers in its units)."""
    return (path / RECORD).is_file() or (path / MARKER).is_file()


def export_damage(folder: Path) -> dict[str, str]:
    """What is wrong with an export folder, by file name ({} when every file matches its digest; an unsealed
    folder's missing marker is named as such)."""
    if not (folder / MARKER).is_file() and (folder / RECORD).is_file():
        return {MARKER: UNSEALED}
    return damage(folder)


def check_export(folder: Path) -> None:
    """Refuse a damaged export folder in one line; warn, in one, that an unsealed one (made before exports were
    sealed) is read unchecked."""
    if not is_export(folder):
        return  # nothing to check: reading it says what it is not
    problems = export_damage(folder)
    if problems == {MARKER: UNSEALED}:
        log.warning(
            "%s has no %s (exported before exports were sealed): read unchecked; export it again", folder, MARKER
        )
    elif problems:
        raise TicketlabError(f"{folder} is damaged: {describe(problems)}; export the ticket again")
