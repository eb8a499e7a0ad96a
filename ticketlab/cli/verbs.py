"""What each verb of the `ticketlab` command does with its parsed arguments."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from rich.console import Console
from rich.markdown import Markdown

from ..earlybert import EarlyBirdConfig, earlybert
from ..errors import TicketlabError
from ..executors import RayExecutor, run_units
from ..experiment import grid, run_experiment
from ..export import export_pruned, export_ticket
from ..lottery import ticket_seed, transfer
from ..models import import_resnet
from ..plan import Plan
from ..pretrain import pretrain, pretrain_record
from ..recipe import load_recipe
from ..report.build import build_report, load_results
from ..report.console import (
    print_earlybert,
    print_earlybert_tables,
    print_export,
    print_pretraining,
    print_rounds,
    print_tables,
    print_tasks,
    print_ticket,
    print_transfer,
    print_verification,
)
from ..report.pretraining import SUMMARY
from ..tasks import TASKS


def _report(args: dict) -> None:
    metrics = dict(args["metric"])
    out = build_report(args["runs"], args["out"], metrics, args["exports"])
    print_tables(args["runs"], metrics)
    print(out / "report.md")


def _experiment(args: dict) -> None:
    recipe = load_recipe(args["preset"] or args["recipe"])
    executor = _executor(args)
    out = run_experiment(
        recipe, args["out"], args["seeds"], args["model"], executor=executor, log_with=args["log_with"]
    )
    if out.name == SUMMARY:  # a recipe with pre-training: one report per method, and this summary of them
        Console().print(Markdown(out.read_text()))
    else:
        print_tables([out.parent.parent])
    print(out)


def _pretrain(args: dict) -> None:
    folder = pretrain(**args)
    print_pretraining(pretrain_record(folder))
    print(folder)


def _executor(args: dict) -> RayExecutor | None:
    """The executor the --executor options name (None: this process), taken out of `args`."""
    kind = args.pop("executor")
    given = {name: args.pop(name) for name in ("address", "cpus_per_run", "gpus_per_run")}
    given = {name: value for name, value in given.items() if value is not None}
    if kind == "local":
        if given:
            raise TicketlabError(f"--{next(iter(given)).replace('_', '-')} needs --executor ray")
        return None
    return RayExecutor(**given)


def _seeds(args: dict) -> list[int | None]:
    """The seeds of --seed S --seeds N: S, ..., S+N-1; [None] for neither (the recipe's seed, a ticket's own)."""
    count, first = args.pop("seeds"), args.pop("seed")
    if count < 1:
        raise TicketlabError(f"--seeds must be at least 1, got {count}")
    return [None] if first is None and count == 1 else list(range(first or 0, (first or 0) + count))


def _find(args: dict) -> None:
    seeds, metric, executor = _seeds(args), args.pop("metric"), _executor(args)
    TASKS.get(args["task"]).decider(metric)  # a bad --metric fails before any training
    model, task, out, checkpoint_every, log_with = (
        args.pop(name) for name in ("model", "task", "out", "checkpoint_every", "log_with")
    )
    plan = Plan.absolute(model, out, {task: args}, checkpoint_every, log_with)
    results = run_units(plan.runs(task, seeds), executor).values()
    for result in results:
        print_rounds(result, metric)
    if len(seeds) > 1 or args["controls"]:
        print_tables([result.path for result in results], {task: metric} if metric else None)


def _transfer(args: dict) -> None:
    for seed in _seeds(args):
        record = transfer(**args, seed=seed)
        used = ticket_seed(args["ticket"]) if seed is None else seed
        print_transfer(args["ticket"], args["task"], used, record)


def _grid(args: dict) -> None:
    seeds = [seed or 0 for seed in _seeds(args)]
    tasks, level, target = args.pop("tasks"), args.pop("sparsity"), args.pop("target")
    executor = _executor(args)
    print_tables(
        grid(tasks, level, seeds=seeds, sparsity=target, data=dict(args.pop("data")), executor=executor, **args)
    )


def _earlybert(args: dict) -> None:
    seeds = _seeds(args)
    settings = EarlyBirdConfig(**{field.name: args.pop(field.name) for field in dataclasses.fields(EarlyBirdConfig)})
    runs = []
    for seed in seeds:
        outcome = earlybert(**args, settings=settings, seed=seed)
        print_earlybert(outcome)
        runs.append(outcome.run)
    if len(seeds) > 1:
        print_earlybert_tables(*load_results(runs), Console())


VERBS: dict[
    str, Callable[[dict[str, Any]], Any]
] = {  # verb -> what it does with its arguments (an int: the exit status)
    "tasks": lambda args: print_tasks(),
    "apply": lambda args: print(export_pruned(**args)),
    "export": lambda args: print_export(export_ticket(**args)),
    "report": _report,
    "experiment": _experiment,
    "pretrain": _pretrain,
    "import-resnet": lambda args: print(import_resnet(**args)),
    "verify": lambda args: 0 if print_verification(args["runs"]) else 1,
    "ticket": lambda args: print_ticket(args["ticket"]),  # its one action: show
    "find": _find,
    "transfer": _transfer,
    "grid": _grid,
    "earlybert": _earlybert,
}
