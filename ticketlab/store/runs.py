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
        search/round_00/  mask_XX.safetensors head_XX.safetensors metrics.json COMPLETE          GMP's pruning run
        teacher/round_00/ outputs.safetensors metrics.json COMPLETE        a distilled run: round 0's training outputs
        head_warmup/round_00/ head.safetensors metrics.json COMPLETE      --head-warmup-epochs: the warmed task head
        logs/<a unit's path>/  events.out.tfevents.*        with --log-with: each trained unit's logs (`log_folder`)

Each round is a unit (ticketlab.store.units): written file by file under temporary names renamed into place, it counts
only once its COMPLETE marker exists; a damaged or missing file is found on read, reported in one line, and redone by
the command that made it, never used. One process at a time writes a run (`lock`).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, ContextManager, Iterable, Iterator

from ..atomic import write_json
from ..config import RunConfig
from ..errors import TicketlabError
from .lock import hold
from .seal import MARKER, damage
from .units import Unit

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]*")  # one path component: no separator, no "..", not hidden
log = logging.getLogger(__name__)


def checked_name(name: str, what: str) -> str:
    """`name` as one safe path component (a branch or run name built from user strings or file contents)."""
    if not SAFE_NAME.fullmatch(name) or len(name.encode()) > 255:
        raise TicketlabError(f"{what} {name!r} is not a safe folder name")
    return name


class RunStore:
    """Paths and units of one run folder (or of a branch, a search, a teacher: the rounds kept in a folder)."""

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

    # -- the units: one per round --

    def unit(self, round: int) -> Unit:
        """Round `round` as a unit of the store."""
        return Unit(self.round_dir(round), {"round": round})

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
        return self.unit(round).checkpoint

    def rewind_path(self) -> Path:
        return self.path / "rewind.safetensors"

    def is_complete(self, round: int) -> bool:
        return self.unit(round).is_complete()

    def damage(self, round: int) -> dict[str, str]:
        return self.unit(round).damage()

    def intact(self, round: int) -> bool:
        return self.unit(round).intact()

    def verified(self, round: int) -> None:
        self.unit(round).verified()

    def reopen(self, round: int, problems: dict[str, str]) -> None:
        self.unit(round).reopen(problems)

    def discard(self, round: int, name: str) -> None:
        self.unit(round).discard(name)

    def metrics(self, round: int) -> dict[str, Any]:
        """Round `round`'s record."""
        return self.unit(round).record()

    def completed_rounds(self) -> list[int]:
        return sorted(int(d.name.split("_")[1]) for d in self.path.glob("round_*") if (d / MARKER).exists())

    def lock(self) -> ContextManager[None]:
        """Hold the run for writing (see ticketlab.store.lock.hold)."""
        return hold(self.path / ".lock", self.path)

    # -- the folders beside the rounds --

    def branch(self, name: str) -> "RunStore":
        """The rounds of a branch of this run (a control experiment or a transfer), kept in its own folder."""
        return RunStore(self.path / "branches" / checked_name(name, "branch"))

    def searches(self) -> "RunStore":
        """The units a finder trains only to draw the run's masks (GMP's pruning run), beside the rounds."""
        return RunStore(self.path / "search")

    def teacher(self) -> "RunStore":
        """A distilled run's teacher unit: the dense round's training outputs (ticketlab.lottery.teacher)."""
        return RunStore(self.path / "teacher")

    def head_warmup(self) -> "RunStore":
        """The unit of a run whose task head is warmed up before round 0 (ticketlab.lottery.context)."""
        return RunStore(self.path / "head_warmup")

    def branches(self) -> list[str]:
        return sorted(d.name for d in (self.path / "branches").glob("*") if d.is_dir())


def log_folder(root: Path, unit: Path) -> Path:
    """Where experiment tracking (--log-with) logs `unit`, a folder under `root` (a run folder; for a pre-trained
    model, the folder of models): root/logs/ and the unit's path under root (logs/round_01,
    logs/branches/random/round_01, logs/search/round_00), outside every unit, so that no marker vouches for logs."""
    return Path(root) / "logs" / Path(unit).relative_to(root)


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
    """Every sealed unit of the runs in `paths` (rounds, branch rounds, searches: each folder with a marker) with
    what is damaged ({} when intact); a run's config.json counts as a unit of its own."""
    for run in run_folders(paths):
        store = RunStore(run)
        try:
            named = store.config().name() == run.name
            yield run / "config.json", {} if named else {"config.json": "does not hash to the run's name"}
        except TicketlabError:
            yield run / "config.json", {"config.json": "is unreadable"}
        for marker in sorted(run.rglob(MARKER)):
            yield marker, damage(marker.parent)
