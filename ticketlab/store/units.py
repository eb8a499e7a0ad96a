"""THE unit lifecycle. A unit is one sealed folder of the store: a round of a run or of a branch, a finder's search,
EarlyBERT's search, a distilled run's teacher, a pre-trained model. Each is made one way (`make`):

    inputs    written before it trains (a round's mask and starting head): a resumed or redone unit finds them
    start     the model set to its start weights, unless the unit's checkpoint resumes it
    train     trained or searched through the one training loop; what it measured is its record
    seal      on the main process its files are written (`keep`), then its record, then its marker, last: the unit
              counts only from then on (ticketlab.store.seal), and its checkpoint and temporaries go

A sealed unit is checked on every use: a writer (`intact`) reports a damaged one in one line and reopens it to be made
again; a reader (`verified`) refuses it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Union

from ..atomic import atomic_path, remove, write_json
from ..errors import TicketlabError
from ..train.checkpoint import usable_checkpoint
from ..train.launch import on_main_process
from .seal import MARKER, damage, describe, forget, seal, unit_files, within

log = logging.getLogger(__name__)


class Typed(Protocol):
    """A typed record (ticketlab.store.records): written as the JSON its `to_json` gives."""

    def to_json(self) -> dict[str, Any]: ...


Record = Union[Typed, Mapping[str, Any]]


class Unit:
    """One sealed folder: its record file, what its marker says besides the digests, and where its training keeps
    its checkpoint (`again`: what the line that reports its damage says). A `whole` unit (a pre-trained model, which
    `--model` reads as a plain folder) appears at once: it is written under a temporary name and renamed into place."""

    def __init__(
        self,
        folder: Path,
        marker: Mapping[str, Any],
        checkpoint: Path | None = None,
        record_file: str = "metrics.json",
        whole: bool = False,
        again: str = "redoing it",
    ):
        self.folder, self.marker, self.record_file, self.whole = Path(folder), dict(marker), record_file, whole
        self.again = again  # what the line reporting its damage says is done about it
        self.checkpoint = self.folder / "checkpoint.pt" if checkpoint is None else checkpoint

    def is_complete(self) -> bool:
        """Its marker exists (`damage` says whether its files are intact)."""
        return (self.folder / MARKER).exists()

    def damage(self) -> dict[str, str]:
        """What is wrong with its files ({} when intact)."""
        return damage(self.folder)

    def intact(self) -> bool:
        """For a writer: True when it is complete and intact (leftovers of a killed process swept); a damaged unit is
        reported in one line and reopened (a whole one removed), so that the command makes it again."""
        if not self.is_complete():
            return False
        problems = self.damage()
        if problems:
            self.reopen(problems)
            return False
        self._sweep()
        return True

    def verified(self) -> None:
        """For a reader: raise unless it is complete and intact."""
        if not self.is_complete():
            raise TicketlabError(f"{self.folder} is not complete")
        problems = self.damage()
        if problems:
            raise TicketlabError(
                f"{self.folder} is damaged: {describe(problems)}; "
                "run the command that made it again to redo it (ticketlab verify lists the damage)"
            )

    def reopen(self, problems: dict[str, str]) -> None:
        """Unseal it to be made again (said in one line where `problems`): its marker and damaged files go, its
        intact files stay as the redo's inputs; a whole unit goes entirely."""
        if problems:
            log.warning("%s is damaged: %s; %s", self.folder, describe(problems), self.again)
        if self.whole:
            remove(self.folder)
            return
        remove(self.folder / MARKER)
        for name in problems:
            if name != MARKER and within(self.folder / name, self.folder):
                remove(self.folder / name)

    def record(self) -> dict[str, Any]:
        """Its record, as written when it was sealed."""
        path = self.folder / self.record_file
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise TicketlabError(f"{path} is damaged or missing: {error}") from None

    def seal(self, record: Record, keep: Callable[[Path], None] | None = None, extra: Iterable[Path] = ()) -> None:
        """Make it whole: on the main process `keep` writes its files into its folder (trained weights, a model), then
        its record and its marker go, the marker holding the digest of every file (and of `extra` files of the run it
        depends on); every process waits for it."""

        def write(folder: Path) -> None:
            if keep is not None:
                keep(folder)
            write_json(folder / self.record_file, as_json(record))
            seal(folder, self.marker, files=[*unit_files(folder), *extra])

        def publish() -> None:
            if self.whole:
                with atomic_path(self.folder) as tmp:
                    write(tmp)
            else:
                write(self.folder)
            self._sweep()

        on_main_process(publish)

    def discard(self, name: str) -> None:
        """Remove a file of a complete unit that is no longer needed, and its entry in the marker."""
        if not (self.folder / name).exists():
            return
        if self.is_complete():
            forget(self.folder, name)
        remove(self.folder / name)

    def _sweep(self) -> None:
        """Remove what a complete unit no longer needs: its checkpoint, temporaries of killed writes."""
        checkpoint, folder = self.checkpoint, self.folder
        temporaries = [*folder.glob(".*.tmp*"), *checkpoint.parent.glob(f".{checkpoint.name}.tmp*")]
        if self.whole:  # a save into the folder's temporary that a kill cut short
            temporaries += folder.parent.glob(f".{folder.name}.tmp*")
        for stale in [checkpoint, *temporaries]:
            remove(stale)


def as_json(record: Record) -> dict[str, Any]:
    """A record as its record file holds it."""
    return record.to_json() if hasattr(record, "to_json") else dict(record)


def make(
    unit: Unit,
    *,
    train: Callable[[], Record],
    start: Callable[[], None] | None = None,
    inputs: Callable[[], None] | None = None,
    keep: Callable[[Path], None] | None = None,
    extra: Iterable[Path] = (),
) -> Record:
    """Make `unit` the one way every unit is made (see the module's docstring): `inputs` written (every process
    calls it; it writes on the main one), `start` unless the unit's checkpoint resumes it (None: the model it is
    given is its start), `train` (its record), then
    sealed with `keep` and `extra` (see `Unit.seal`). Returns the record."""
    if inputs is not None:
        inputs()
    if start is not None and not usable_checkpoint(unit.checkpoint):
        start()
    record = train()
    unit.seal(record, keep, extra)
    return record
