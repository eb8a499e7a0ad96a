"""Where the units of an experiment run: one after another in this process (the default), or as Ray tasks on this
machine or a cluster (`--executor ray`), each started once the units it reads from are complete.

A unit is one call of a workflow (find, transfer, earlybert, ...) with its arguments. It is a pure function of its
settings that writes into the run store, so where it runs does not change what it writes, and a unit that dies is
resumed by running it again: Ray retries it on another worker, and re-running the command skips what is complete.
The units that write one run folder run in order (its lock admits one writer at a time); units of different folders
run at once. On a cluster the store must be on a path every node shares.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .config import check_range
from .errors import TicketlabError

log = logging.getLogger(__name__)
RETRIES = 3  # a unit whose worker dies (killed, out of memory, node lost) is started again up to this many times
REPORT_EVERY_S = 30.0  # at most this long between two progress lines
CONNECT_TIMEOUT_S = 5.0  # how long --address HOST:PORT may take to answer (Ray itself retries for minutes)
FINEST_SHARE = 1e-4  # the smallest share of a CPU or GPU Ray counts (its resource precision)
LOCAL = (None, "auto", "local")  # --address values that name no HOST:PORT: Ray finds or starts its own


@dataclass(frozen=True)
class Unit:
    """One call of a workflow: `call(**kwargs)`, writing into the run folder `folder`."""

    name: str  # how progress lines and errors name it
    call: Callable[..., Any]  # a module-level function, so that a worker can import it
    kwargs: Mapping[str, Any]
    folder: Path | None  # the run folder it writes: units of one folder run in order (None: one no other unit writes)
    after: tuple[str, ...] = ()  # the units whose results it reads (by name)


@dataclass(frozen=True)
class RayExecutor:
    """Run units as Ray tasks: on a local Ray (`address` None) or on the cluster at `address` ("auto", HOST:PORT).
    Settings Ray would refuse, or a launch of several processes (each would start a driver), fail here in one line."""

    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    init: Mapping[str, Any] = field(default_factory=dict)  # more ray.init arguments (a local Ray's num_cpus)

    def __post_init__(self) -> None:
        check_range("--cpus-per-run", self.cpus_per_run, 0.0, above_low=True)  # NaN too
        check_range("--gpus-per-run", self.gpus_per_run, 0.0)
        for name, _, share in self.requests():
            if 0 < share < FINEST_SHARE:
                raise TicketlabError(
                    f"{name} must be 0 or at least {FINEST_SHARE:g} (Ray's finest share), got {share!r}"
                )
        if self.gpus_per_run > 1 and not float(self.gpus_per_run).is_integer():  # Ray's rule for GPUs (not CPUs)
            raise TicketlabError(f"--gpus-per-run above 1 must be a whole number of GPUs, got {self.gpus_per_run!r}")
        if self.address not in LOCAL:
            _host_and_port(self.address)
        processes = int(os.environ.get("WORLD_SIZE", 1))
        if processes > 1:
            raise TicketlabError(
                f"--executor ray starts one Ray driver: run the command as one process, not in a launch of {processes} "
                "(torchrun, accelerate launch)"
            )

    def requests(self) -> list[tuple[str, str, float]]:
        """What each unit takes: (option, Ray's resource, share)."""
        return [("--cpus-per-run", "CPU", self.cpus_per_run), ("--gpus-per-run", "GPU", self.gpus_per_run)]


def run_units(units: Sequence[Unit], executor: RayExecutor | None = None) -> dict[str, Any]:
    """Run `units` (listed so that each comes after those it reads from) in this process, or with `executor`;
    returns what each call returned, by unit name."""
    seen: set[str] = set()
    for unit in units:
        missing = [name for name in unit.after if name not in seen]
        if missing or unit.name in seen:
            raise TicketlabError(f"{unit.name}: listed twice, or before {missing[0] if missing else 'itself'}")
        seen.add(unit.name)
    if executor is None:
        return {unit.name: unit.call(**unit.kwargs) for unit in units}
    return _run_on_ray(units, executor)


def _run_on_ray(units: Sequence[Unit], executor: RayExecutor) -> dict[str, Any]:
    try:
        import ray  # an optional extra (ticketlab[ray]): imported only where it is asked for
    except ImportError:
        raise TicketlabError("--executor ray needs Ray: pip install 'ticketlab[ray]'") from None
    _start(ray, executor)
    task = ray.remote(_run_unit)
    resources = dict(
        num_cpus=executor.cpus_per_run,
        num_gpus=executor.gpus_per_run,
        max_retries=RETRIES,
        retry_exceptions=False,
        num_returns=2,
    )
    tokens: dict[str, Any] = {}
    results: dict[str, Any] = {}
    needs: dict[str, list[str]] = {}
    last_in_folder: dict[Path, str] = {}
    for unit in units:
        needs[unit.name] = [*unit.after, *([last_in_folder[unit.folder]] if unit.folder in last_in_folder else [])]
        tokens[unit.name], results[unit.name] = task.options(name=unit.name, **resources).remote(
            unit.call, unit.kwargs, *(tokens[name] for name in needs[unit.name])
        )
        if unit.folder is not None:
            last_in_folder[unit.folder] = unit.name
    return _follow(ray, results, needs)


def _start(ray: Any, executor: RayExecutor) -> None:
    """Start or join Ray (unless this process has), then check that some node can run a unit: a one-line error
    where Ray cannot be reached, or no unit could ever start (Ray would queue them for ever)."""
    if not ray.is_initialized():
        if executor.address not in LOCAL:
            _check_answers(executor.address)
        try:  # workers' output (ticketlab's log lines) is printed here, prefixed with the unit's name
            with _ray_silenced():  # and Ray's Python logger below errors, here and after
                ray.init(address=executor.address, log_to_driver=True, logging_level=logging.ERROR, **executor.init)
        except Exception as error:  # no Ray at "auto", a setting Ray refuses, ...: Ray's first line says which
            raise TicketlabError(f"--executor ray could not start or join Ray: {_one_line(error)}") from None
        except SystemExit as stop:  # Ray's own SIGTERM handler, when its start is cut short
            raise TicketlabError(f"--executor ray: Ray was stopped while it started (exit {stop.code})") from None
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    for name, kind, share in executor.requests():
        most = max((node.get(kind, 0.0) for node in nodes), default=0.0)
        if share > most:
            raise TicketlabError(
                f"{name} {share:g}: no node of this Ray has that many {kind}s (the most on one node: {most:g})"
            )


@contextmanager
def _ray_silenced() -> Iterator[None]:
    """Ray's own log lines while it starts or joins (its C++ core writes to file descriptor 2 itself, so a Python
    redirect would not catch them) go to a file that is then dropped: where it fails, ticketlab says why in one line;
    where it works, there was nothing to say."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _check_answers(address: str) -> None:
    """A one-line error unless a gRPC server (Ray's GCS, or a Ray client server) answers at HOST:PORT within
    CONNECT_TIMEOUT_S: Ray itself retries a silent address for minutes, printing its own log lines meanwhile."""
    import grpc  # Ray's own channel to its GCS, with a timeout of ours (an optional extra, as Ray is)

    host, port = _host_and_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise TicketlabError(f"--address {address}: nothing answers there ({error})") from None
    channel = grpc.insecure_channel(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT_S)
    except grpc.FutureTimeoutError:
        raise TicketlabError(
            f"--address {address}: something answers there, but not Ray (no gRPC handshake in {CONNECT_TIMEOUT_S:g} s)"
        ) from None
    finally:
        channel.close()


def _host_and_port(address: str) -> tuple[str, int]:
    """The host and port of --address HOST:PORT (or ray://HOST:PORT); a one-line error for any other text."""
    host, _, port = address.rpartition("://")[2].rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TicketlabError(f"--address must be auto or HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def _run_unit(call: Callable[..., Any], kwargs: Mapping[str, Any], *after: None) -> tuple[None, Any]:
    """A unit on a Ray worker. Returns a token, which the units after it wait for (`after`: theirs) without
    receiving what it returned, and what `call` returned."""
    logging.basicConfig(format="ticketlab: %(message)s", level=logging.INFO)
    return None, call(**kwargs)


def _follow(ray: Any, refs: Mapping[str, Any], needs: Mapping[str, list[str]]) -> dict[str, Any]:
    """Wait for every unit, logging how many are done, running and waiting; the first that fails stops the command
    in one line (what it wrote stays: running the command again resumes it)."""
    names = {ref: name for name, ref in refs.items()}
    pending, done, results = list(refs.values()), set(), {}
    reported = 0.0
    while pending:
        finished, pending = ray.wait(pending, num_returns=1, timeout=REPORT_EVERY_S)
        for ref in finished:
            try:
                results[names[ref]] = ray.get(ref)
            except ray.exceptions.RayError as error:  # the unit raised, or its worker died more than RETRIES times
                os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"  # no traceback for each unit it leaves failed
                cause = getattr(error, "cause", None) or error
                message = str(cause).splitlines()[0] if isinstance(cause, TicketlabError) else _one_line(cause)
                raise TicketlabError(f"{names[ref]}: {message}") from None
            done.add(names[ref])
        if finished or time.monotonic() - reported >= REPORT_EVERY_S:
            waiting = sum(1 for ref in pending if not all(need in done for need in needs[names[ref]]))
            log.info(
                "ray: %d of %d units done, %d running or queued, %d waiting for others",
                len(done),
                len(refs),
                len(pending) - waiting,
                waiting,
            )
            reported = time.monotonic()
    return results


def _one_line(error: BaseException) -> str:
    """An error's type and the first line of its message."""
    return f"{type(error).__name__}: {error}".splitlines()[0]
