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
                                                      (the early-bird one also search.json, ticket.safetensors)

Every file is written under a temporary name and renamed into place; a round counts only once COMPLETE exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .atomic import remove, write_json
from .config import RunConfig
from .errors import TicketlabError


def split_metrics(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The evaluation splits' metrics of a round's record ({split: {metric: value}}): its dicts of numbers
    (a transfer's `source` and EarlyBERT's `structure` and `search` are dicts of other things)."""
    return {
        split: values for split, values in record.items()
        if isinstance(values, dict) and values and all(_is_number(v) for v in values.values())
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RunStore:
    """Paths and records of one run folder."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def initialize(self, config: RunConfig) -> None:
        """Write config.json on first use; an existing one must hold the same config."""
        config_path = self.path / "config.json"
        if not config_path.exists():
            write_json(config_path, config.to_dict())
        elif self.config() != config:
            raise TicketlabError(f"{self.path} holds a different config; move it away or use another --out")

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
        return (self.round_dir(round) / "COMPLETE").exists()

    def complete(self, round: int, metrics: dict[str, Any]) -> None:
        """Record a round's metrics, then mark it complete (the marker is written last); temporary files a killed
        process left behind in the round's folder go."""
        write_json(self.round_dir(round) / "metrics.json", metrics)
        write_json(self.round_dir(round) / "COMPLETE", {"round": round})
        for stale in self.round_dir(round).glob(".*.tmp*"):
            remove(stale)

    def completed_rounds(self) -> list[int]:
        return sorted(int(d.name.split("_")[1]) for d in self.path.glob("round_*") if (d / "COMPLETE").exists())

    def branch(self, name: str) -> "RunStore":
        """The rounds of a branch of this run (a control experiment or a transfer), kept in its own folder."""
        return RunStore(self.path / "branches" / name)

    def branches(self) -> list[str]:
        return sorted(d.name for d in (self.path / "branches").glob("*") if d.is_dir())

    def metrics(self, round: int) -> dict[str, Any]:
        path = self.round_dir(round) / "metrics.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise TicketlabError(f"{path} is damaged or missing: {error}") from None
