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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import check_range
from .errors import TicketlabError

log = logging.getLogger(__name__)
RETRIES = 3  # a unit whose worker dies (killed, out of memory, node lost) is started again up to this many times
REPORT_EVERY_S = 30.0  # at most this long between two progress lines


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
    """Run units as Ray tasks: on a local Ray (`address` None) or on the cluster at `address` ("auto", HOST:PORT)."""

    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    init: Mapping[str, Any] = field(default_factory=dict)  # more ray.init arguments (a local Ray's num_cpus)

    def __post_init__(self) -> None:
        check_range("--cpus-per-run", self.cpus_per_run, 0.0, above_low=True)  # NaN too
        check_range("--gpus-per-run", self.gpus_per_run, 0.0)


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
    if not ray.is_initialized():
        ray.init(address=executor.address, log_to_driver=False, **executor.init)
    task = ray.remote(_run_unit)
    resources = dict(
        num_cpus=executor.cpus_per_run, num_gpus=executor.gpus_per_run, max_retries=RETRIES, retry_exceptions=False
    )
    refs: dict[str, Any] = {}
    last_in_folder: dict[Path | None, Any] = {}
    needs: dict[str, list[Any]] = {}
    for unit in units:
        needs[unit.name] = [refs[name] for name in unit.after]
        if unit.folder in last_in_folder:
            needs[unit.name].append(last_in_folder[unit.folder])
        refs[unit.name] = task.options(name=unit.name, **resources).remote(unit.call, unit.kwargs, *needs[unit.name])
        if unit.folder is not None:
            last_in_folder[unit.folder] = refs[unit.name]
    return _follow(ray, refs, needs)


def _run_unit(call: Callable[..., Any], kwargs: Mapping[str, Any], *needed: Any) -> Any:
    """A unit on a Ray worker; `needed` (the results of the units it waits for) only orders it after them."""
    logging.basicConfig(format="ticketlab: %(message)s", level=logging.INFO)
    return call(**kwargs)


def _follow(ray: Any, refs: Mapping[str, Any], needs: Mapping[str, list[Any]]) -> dict[str, Any]:
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
                cause = getattr(error, "cause", None)
                message = str(cause if isinstance(cause, TicketlabError) else error).splitlines()[0]
                raise TicketlabError(f"{names[ref]}: {message}") from None
            done.add(ref)
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
