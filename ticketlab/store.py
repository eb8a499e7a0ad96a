"""The run store: one folder per lottery run, named by a readable prefix and the hash of its config.

    <out>/<task>_<model>_<schedule>-<target>_<hash>/
        config.json
        round_00/ mask.safetensors  head.safetensors  metrics.json  weights.safetensors  COMPLETE
                                                            (round 0: the dense model; head: the start values)
        round_01/ ...                                       (checkpoint.pt while it trains)
        rewind.safetensors                                                      (with a rewind step)
        branches/<name>/round_XX/ mask.safetensors  metrics.json  COMPLETE      controls and transfers: the mask
                                                                                derives from round XX of a run
        branches/earlybert[-random]-<hash>/round_00/  ... structure.safetensors model/  EarlyBERT's structured tickets
        branches/earlybert-<hash>/search/  search.json ticket.safetensors coefficients.safetensors COMPLETE  its search
        teacher/round_00/ outputs.safetensors metrics.json COMPLETE        a distilled run: round 0's training outputs

Every file is written under a temporary name and renamed into place; a unit (a round of the run or of a branch)
counts only once its COMPLETE marker exists. The marker is written last and holds the SHA-256 digest of every file of
the unit: a damaged or missing file is found on read, reported in one line, and redone by the command that made it
(`damage`, `reopen`), never used. One process at a time writes a run (`lock`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator

from filelock import FileLock, Timeout

from .atomic import remove, write_json
from .config import RunConfig
from .errors import TicketlabError
from .train import accelerator, on_main_process

MARKER = "COMPLETE"
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]*")  # one path component: no separator, no "..", not hidden
log = logging.getLogger(__name__)


def split_metrics(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The evaluation splits' metrics of a round's record ({split: {metric: value}}): its dicts of numbers but the
    cost ledger, `cost` (a transfer's `source` and EarlyBERT's `structure` and `search` are dicts of other things)."""
    return {
        split: values
        for split, values in record.items()
        if split != "cost" and isinstance(values, dict) and values and all(_is_number(v) for v in values.values())
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    digests = {os.path.relpath(path, folder): file_digest(path) for path in files}
    write_json(folder / MARKER, {**record, "files": digests})


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
        if not _within(path, folder.parent):
            problems[name] = "outside the run"
        elif not path.is_file():
            problems[name] = "missing"
        elif file_digest(path) != expected:
            problems[name] = "does not match its digest"
    return problems


def finished(folder: Path, checkpoint: Path, again: str) -> bool:
    """For a unit made whole in a folder of its own (a pre-trained model, an EarlyBERT search): whether it is complete
    and intact. Its checkpoint and temporaries a kill left after it completed go; a damaged unit is reported in one
    line and removed, to be made `again` ("searching again")."""
    if not (folder / MARKER).exists():
        return False
    problems = damage(folder)
    if problems:
        log.warning("%s is damaged: %s; %s", folder, describe(problems), again)
        remove(folder)
        return False
    for stale in [checkpoint, *folder.glob(".*.tmp*")]:
        remove(stale)
    return True


def describe(problems: dict[str, str]) -> str:
    """Problems as a short phrase: "mask.safetensors does not match its digest (and 1 more)"."""
    (name, problem), *more = problems.items()
    return f"{name} {problem}" + (f" (and {len(more)} more)" if more else "")


def checked_name(name: str, what: str) -> str:
    """`name` as one safe path component (a branch or run name built from user strings or file contents)."""
    if not SAFE_NAME.fullmatch(name) or len(name.encode()) > 255:
        raise TicketlabError(f"{what} {name!r} is not a safe folder name")
    return name


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
        lock.release()


def _holder(path: Path) -> str:
    """Who holds a run's lock, as the holder wrote it."""
    try:
        return str(json.loads(path.read_text()))
    except (OSError, ValueError):
        return "another process"


def _within(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


class RunStore:
    """Paths and records of one run folder."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def initialize(self, config: RunConfig) -> None:
        """Write config.json on first use; an existing one must hold the same config (a damaged one is written again:
        the folder's name, the config's hash, says what it held)."""
        config_path = self.path / "config.json"
        if config_path.exists():
            try:
                held = self.config()
            except TicketlabError as error:
                log.warning("%s; writing it again", error)
            else:
                if held != config:
                    raise TicketlabError(f"{self.path} holds a different config; move it away or use another --out")
                return
        write_json(config_path, config.to_dict())

    @classmethod
    def open(cls, path: Path) -> "RunStore":
        store = cls(path)
        if not (store.path / "config.json").is_file():
            raise TicketlabError(f"{store.path} is not a ticketlab run folder (no config.json)")
        return store

    def config(self) -> RunConfig:
        try:
            return RunConfig.from_dict(json.loads((self.path / "config.json").read_text()))
        except (ValueError, TypeError, KeyError) as error:
            raise TicketlabError(f"{self.path / 'config.json'} is damaged: {error}") from None

    def round_dir(self, round: int) -> Path:
        return self.path / f"round_{round:02d}"

    def mask_path(self, round: int) -> Path:
        return self.round_dir(round) / "mask.safetensors"

    def weights_path(self, round: int) -> Path:
        return self.round_dir(round) / "weights.safetensors"

    def structure_path(self, round: int) -> Path:
        """A structured ticket's heads and FFN neurons (EarlyBERT branches): "heads.{i}" and "ffn.{i}" per layer."""
        return self.round_dir(round) / "structure.safetensors"

    def head_path(self, round: int) -> Path:
        """The task head's values at the start of the round (what the round's controls start from)."""
        return self.round_dir(round) / "head.safetensors"

    def checkpoint_path(self, round: int) -> Path:
        return self.round_dir(round) / "checkpoint.pt"

    def rewind_path(self) -> Path:
        return self.path / "rewind.safetensors"

    def is_complete(self, round: int) -> bool:
        """The round's marker exists (`damage` says whether its files are intact)."""
        return (self.round_dir(round) / MARKER).exists()

    def complete(self, round: int, metrics: dict[str, Any], extra: Iterable[Path] = ()) -> None:
        """Record a round's metrics, then seal it: the marker, written last, holds the digest of every file of the
        round (and of `extra` files of the run it depends on). Its checkpoint and any temporary file a killed process
        left behind go."""
        folder = self.round_dir(round)
        write_json(folder / "metrics.json", metrics)
        seal(folder, {"round": round}, files=[*unit_files(folder), *extra])
        self._sweep(round)

    def finish(
        self, round: int, record: dict[str, Any], keep: Callable[[Path], None] | None = None, extra: Iterable[Path] = ()
    ) -> None:
        """Make a trained unit whole, the one way every workflow does: on the main process `keep` writes the unit's
        files into its folder (trained weights, a model folder), then its record and the marker go (see `complete`);
        every process waits for it."""

        def write() -> None:
            if keep is not None:
                keep(self.round_dir(round))
            self.complete(round, record, extra)

        on_main_process(write)

    def damage(self, round: int) -> dict[str, str]:
        """What is wrong with a complete round's files ({} when intact)."""
        return damage(self.round_dir(round))

    def intact(self, round: int) -> bool:
        """For a writer: True when the round is complete and intact (leftovers of a killed process swept);
        a damaged round is reported and reopened, so that the command redoes it."""
        if not self.is_complete(round):
            return False
        problems = self.damage(round)
        if problems:
            self.reopen(round, problems)
            return False
        self._sweep(round)
        return True

    def verified(self, round: int) -> None:
        """For a reader: raise unless the round is complete and intact."""
        if not self.is_complete(round):
            raise TicketlabError(f"{self.round_dir(round)} is not complete")
        problems = self.damage(round)
        if problems:
            raise TicketlabError(
                f"{self.round_dir(round)} is damaged: {describe(problems)}; "
                "run the command that made it again to redo it (ticketlab verify lists the damage)"
            )

    def reopen(self, round: int, problems: dict[str, str]) -> None:
        """Remove a round's marker and its damaged files (said in one line), so that it is redone; the intact files
        stay as the redo's inputs."""
        folder = self.round_dir(round)
        if problems:
            log.warning("%s is damaged: %s; redoing it", folder, describe(problems))
        remove(folder / MARKER)
        for name in problems:
            if name != MARKER and _within(folder / name, folder):
                remove(folder / name)

    def discard(self, round: int, name: str) -> None:
        """Remove a file of a complete round that is no longer needed, and its entry in the round's marker."""
        folder = self.round_dir(round)
        if not (folder / name).exists():
            return
        if self.is_complete(round):  # the other digests stay as recorded: no rehashing, and no damage laundered
            try:
                record = json.loads((folder / MARKER).read_text())
                record["files"].pop(name, None)
                write_json(folder / MARKER, record)
            except (OSError, ValueError, TypeError, KeyError, AttributeError):
                pass  # an unreadable marker is damage that the round's next check reports
        remove(folder / name)

    def _sweep(self, round: int) -> None:
        """Remove what a complete round no longer needs: its checkpoint, temporaries of killed writes."""
        folder = self.round_dir(round)
        for stale in [self.checkpoint_path(round), *folder.glob(".*.tmp*")]:
            remove(stale)

    def completed_rounds(self) -> list[int]:
        return sorted(int(d.name.split("_")[1]) for d in self.path.glob("round_*") if (d / MARKER).exists())

    def lock(self) -> ContextManager[None]:
        """Hold the run for writing (see `hold`)."""
        return hold(self.path / ".lock", self.path)

    def branch(self, name: str) -> "RunStore":
        """The rounds of a branch of this run (a control experiment or a transfer), kept in its own folder."""
        return RunStore(self.path / "branches" / checked_name(name, "branch"))

    def searches(self) -> "RunStore":
        """The units a finder trains only to draw the run's masks (GMP's pruning run), beside the rounds."""
        return RunStore(self.path / "search")

    def teacher(self) -> "RunStore":
        """A distilled run's teacher unit: the dense round's training outputs (ticketlab.lottery.teacher)."""
        return RunStore(self.path / "teacher")

    def branches(self) -> list[str]:
        return sorted(d.name for d in (self.path / "branches").glob("*") if d.is_dir())

    def metrics(self, round: int) -> dict[str, Any]:
        path = self.round_dir(round) / "metrics.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise TicketlabError(f"{path} is damaged or missing: {error}") from None


def run_folders(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders, given as themselves or as folders holding them."""
    folders: list[Path] = []
    for path in map(Path, paths):
        if (path / "config.json").is_file():
            folders.append(path)
        elif path.is_dir() and (found := sorted(p.parent for p in path.glob("*/config.json"))):
            folders.extend(found)
        else:
            raise TicketlabError(f"{path} is neither a ticketlab run folder nor a folder of runs")
    return folders


def verify(paths: Iterable[str | Path]) -> Iterator[tuple[Path, dict[str, str]]]:
    """Every sealed unit of the runs in `paths` (rounds, branch rounds, EarlyBERT searches: each folder with a
    marker) with what is damaged ({} when intact); a run's config.json counts as a unit of its own."""
    for run in run_folders(paths):
        store = RunStore(run)
        try:
            named = store.config().name() == run.name
            yield run / "config.json", {} if named else {"config.json": "does not hash to the run's name"}
        except TicketlabError:
            yield run / "config.json", {"config.json": "is unreadable"}
        for marker in sorted(run.rglob(MARKER)):
            yield marker, damage(marker.parent)
