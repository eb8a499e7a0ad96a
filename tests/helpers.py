"""What several tests share: a hook that interrupts training, the `ticketlab` command run in a child process that is
killed (SIGKILL) at chosen points and run again, and the comparison of what two runs leave behind."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ticketlab.train import TrainHook

# Children fork from a server that has imported ticketlab once: a run starts in milliseconds, not the seconds an import
# of torch and transformers takes, and it is still a process of its own that SIGKILL ends wherever it is.
COMMANDS = multiprocessing.get_context("forkserver")
COMMANDS.set_forkserver_preload(["ticketlab.cli"])
TIMEOUT_S = 240


class StopAfter(TrainHook):
    """Interrupts training (as a KeyboardInterrupt would) after the `at`-th step."""

    def __init__(self, at: int):
        self.at = at

    def after_step(self, step, model):
        if step == self.at:
            raise KeyboardInterrupt


def _ticketlab(args: Sequence[str], stderr: str) -> None:
    """`ticketlab ARGS` as `python -m ticketlab` runs it; its standard error goes to the file `stderr`."""
    from ticketlab.cli import main

    with open(os.devnull, "wb") as devnull, open(stderr, "ab") as errors:
        os.dup2(devnull.fileno(), 1)
        os.dup2(errors.fileno(), 2)
    torch.set_num_threads(1)  # the tests' tiny models run several times faster than with two threads on busy cores
    sys.exit(main(list(args)))


def start(args: Sequence[Any], stderr: Path) -> multiprocessing.Process:
    process = COMMANDS.Process(target=_ticketlab, args=([str(a) for a in args], str(stderr)))
    process.start()
    return process


def run(args: Sequence[Any], stderr: Path) -> int:
    """Run `ticketlab ARGS` to its end; its exit status."""
    process = start(args, stderr)
    process.join(TIMEOUT_S)
    if process.exitcode is None:
        process.kill()
        raise AssertionError(f"ticketlab {' '.join(map(str, args))} ran past {TIMEOUT_S} s")
    return process.exitcode


def run_ok(args: Sequence[Any], stderr: Path) -> None:
    assert run(args, stderr) == 0, stderr.read_text()


def kill_when(args: Sequence[Any], out: Path, pattern: str, stderr: Path) -> Path:
    """Start `ticketlab ARGS` and SIGKILL it once a file matching `pattern` (a glob under `out`) appears."""
    assert not list(out.glob(pattern)), f"{pattern} exists before the run starts"
    process = start(args, stderr)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while process.exitcode is None and time.monotonic() < deadline:
            found = sorted(out.glob(pattern))
            if found:
                os.kill(process.pid, signal.SIGKILL)
                process.join()
                return found[0]
            time.sleep(0.005)
    finally:
        if process.exitcode is None:
            process.kill()
            process.join()
    raise AssertionError(f"the run ended before {pattern} appeared: {stderr.read_text()[-2000:]}")


def resume_after_kills(args: Sequence[Any], out: Path, patterns: Sequence[str]) -> None:
    """Kill `ticketlab ARGS` once each of `patterns` appears (each time started again), then run it to its end."""
    stderr = out.parent / f"{out.name}.stderr"
    for pattern in patterns:
        kill_when(args, out, pattern, stderr)
    run_ok(args, stderr)


def assert_same_outputs(resumed: Path, uninterrupted: Path) -> None:
    """The two folders hold the same files (nothing left over), the same tensors in every safetensors file (masks,
    weights, structures, saved models) and the same JSON but for times; other files are equal byte for byte
    (hidden ones, a run's lock and its holder, only by name)."""
    names = sorted(p.relative_to(uninterrupted) for p in uninterrupted.rglob("*") if p.is_file())
    assert sorted(p.relative_to(resumed) for p in resumed.rglob("*") if p.is_file()) == names
    for name in names:
        a, b = resumed / name, uninterrupted / name
        if any(part.startswith(".") for part in name.parts):
            continue
        if name.suffix == ".safetensors":
            first, second = load_file(a), load_file(b)
            assert first.keys() == second.keys(), name
            assert all(torch.equal(first[k], second[k]) for k in first), name
            assert _metadata(a) == _metadata(b), name
        elif name.name == "COMPLETE":  # the digests of files holding times differ: only their names count
            first, second = (json.loads(path.read_text()) for path in (a, b))
            assert sorted(first.pop("files")) == sorted(second.pop("files")) and first == second, name
        elif name.suffix == ".json":
            assert _without_times(json.loads(a.read_text())) == _without_times(json.loads(b.read_text())), name
        else:
            assert a.read_bytes() == b.read_bytes(), name


def _metadata(path: Path) -> dict[str, str] | None:
    with safe_open(path, "pt") as handle:
        return handle.metadata()


def _without_times(value: Any) -> Any:
    """JSON without what differs from run to run: durations (keys naming a time)."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if "time" not in k}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def flip(path: Path) -> None:
    """Flip one bit near the end of a file (inside a safetensors file's last tensor: it still parses)."""
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    """Cut a file to half its length."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
