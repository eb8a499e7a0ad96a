"""Experiment tracking (`--log-with tensorboard`; off by default): a unit's training loss and learning rate at every
step, its evaluation metrics and its settings as hyperparameters, as TensorBoard event files in a folder of its own
(ticketlab.store.log_folder says which). It only reads: no trained tensor, random state or setting depends on it.

Not accelerate's tracking (`Accelerator(log_with=...)`, `init_trackers`, `log`, `end_training`): a process has one
Accelerator (ticketlab.train.launch), made before a command knows its units, while each unit logs to a folder of its
own, and `end_training` destroys the process group that the command's next unit trains in. Nor accelerate's
TensorBoardTracker: its `store_init_configuration` puts the hyperparameters in a new time-stamped sub-run at every
call, apart from the unit's metrics, and a resumed unit would get another. So torch's SummaryWriter, directly.

A resumed unit continues its curves: its writer opens at the first step it logs with TensorBoard's `purge_step`, and
TensorBoard's readers drop what an earlier attempt logged from that step on (logged before a kill, after the last
checkpoint, and logged again now), so each step is read once.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..errors import TicketlabError
from .hooks import TrainHook
from .launch import accelerator

TRACKERS = {"tensorboard": "tensorboard"}  # what --log-with takes -> the package it needs


def check_trackers(names: Sequence[str]) -> tuple[str, ...]:
    """`names` (--log-with) without repeats; a one-line error for one that is unknown or not installed."""
    for name in names:
        if name not in TRACKERS:
            raise TicketlabError(f"unknown tracker {name!r} for --log-with; known: {', '.join(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise TicketlabError(
                f"--log-with {name} needs the {TRACKERS[name]} package, which is not installed: "
                "pip install 'ticketlab[track]'"
            )
    return tuple(dict.fromkeys(names))


def hyperparameters(settings: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested settings as flat hyperparameters ("train.learning_rate"); a list or tuple as its text, None left out
    (a value TensorBoard's hparams cannot hold)."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(hyperparameters(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif value is not None:
            flat[name] = str(value)
    return flat


class Tracking(TrainHook):
    """Logs one unit to `trackers` in `folder` (nothing when there are none): `settings` as hyperparameters, the loss
    and learning rate of every step (`log_step`), its evaluation (`log_evaluation`). Only the main process writes;
    leaving its `with` block closes it (a unit that ends without an error is marked finished)."""

    def __init__(self, trackers: Sequence[str], folder: Path, settings: Mapping[str, Any]):
        self.trackers, self.folder = tuple(trackers), Path(folder)
        self.settings = hyperparameters(settings)
        self._writer: Any = None  # torch.utils.tensorboard.SummaryWriter, opened at the first value logged

    def log_step(self, step: int, loss: torch.Tensor, learning_rate: float) -> None:
        if not self.trackers:
            return
        acc = accelerator()
        if acc.num_processes > 1:  # the mean over the processes' shares of the batch: every process takes part
            loss = acc.reduce(loss, "mean")
        self._log({"train/loss": float(loss), "train/learning_rate": learning_rate}, step)

    def log_evaluation(self, splits: Mapping[str, Mapping[str, float]], step: int) -> None:
        """The unit's evaluation (split -> metric -> value), after its `step` steps."""
        values = {f"eval/{split}/{name}": value for split, metrics in splits.items() for name, value in metrics.items()}
        if self.trackers and values:
            self._log(values, step)

    def _log(self, values: Mapping[str, float], step: int) -> None:
        if not accelerator().is_main_process:
            return
        if self._writer is None:
            self._writer = self._open(step)
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)

    def _open(self, step: int) -> Any:
        """The unit's writer, from `step` on (an earlier attempt's values from there on are purged), with its
        hyperparameters (TensorBoard's hparams: a session start; the experiment is inferred from the sessions).
        TensorBoard is imported here, where it is used: it is an optional extra (ticketlab[track])."""
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        writer = SummaryWriter(self.folder, purge_step=step)
        writer.file_writer.add_summary(hparams(self.settings, {})[1], step)
        return writer

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, error: type[BaseException] | None, *details: Any) -> None:
        if self._writer is None:
            return
        if error is None:
            from torch.utils.tensorboard.summary import hparams

            self._writer.file_writer.add_summary(hparams(self.settings, {})[2])  # the session's end: finished
        self._writer.close()
        self._writer = None
