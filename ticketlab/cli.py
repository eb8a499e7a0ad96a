"""The `ticketlab` command: one subcommand per verb."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from rich.console import Console
from rich.table import Table

from .config import PruneConfig
from .errors import TicketlabError
from .export import export_pruned
from .lottery import LotteryResult, find
from .models import EMBEDDED_MODELS
from .pruning import SCHEDULES, SCOPES
from .store import RunStore
from .tasks import TASKS


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 1)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ticketlab", description="Lottery tickets in pre-trained networks.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    find_cmd = verbs.add_parser("find", help="find a ticket by iterative magnitude pruning (IMP)")
    find_cmd.add_argument("--model", default="splade-tiny", help=f"{' | '.join(EMBEDDED_MODELS)} | a local Hugging Face folder")
    find_cmd.add_argument("--task", default="rotten-tomatoes", help=f"one of: {', '.join(TASKS)}")
    find_cmd.add_argument("--data", help="the task's data files instead of its default")
    find_cmd.add_argument("--metric", help="the metric deciding matching, METRIC or SPLIT/METRIC (default: the paper's)")
    find_cmd.add_argument("--sparsity", type=_fraction, default=PruneConfig.sparsity, help="target sparsity (default %(default)s)")
    find_cmd.add_argument("--out", default="runs", help="run store folder (default %(default)s)")
    find_cmd.add_argument("--save-weights", action="store_true", help="keep every round's trained weights (default: the last round's)")
    find_cmd.add_argument("--checkpoint-every", type=int, default=100, metavar="STEPS", help="checkpoint interval (default %(default)s)")

    prune = find_cmd.add_argument_group("pruning (defaults: the BERT-tickets code)")
    prune.add_argument("--schedule", choices=SCHEDULES, help="linear: RATE of the original weights per round; geometric: of the remaining")
    prune.add_argument("--rate", type=_fraction, help="fraction pruned per round (default 0.1 linear, 0.2 geometric)")
    prune.add_argument("--scope", choices=SCOPES, help="one global ranking (default) or each matrix to the same sparsity")
    prune.add_argument("--rewind-step", type=int, help="rewind to the weights after this step of round 0 (default 0: θ0)")
    prune.add_argument("--rewind-head", action="store_true", default=None, help="reset the task head too (default: it keeps its trained values)")

    verbs.add_parser("tasks", help="list the tasks with their metrics and the files they read")
    apply_cmd = verbs.add_parser("apply", help="write a model with a ticket applied (pruned weights zeroed) as a Hugging Face folder")
    apply_cmd.add_argument("ticket", help="a mask file, or a run folder (its last round; RUN:ROUND for another)")
    apply_cmd.add_argument("--model", default="splade-tiny", help="the ticket's base model")
    apply_cmd.add_argument("--out", required=True, help="a new folder")

    train = find_cmd.add_argument_group("training (defaults: the task's recipe)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", dest="learning_rate", type=float)
    train.add_argument("--max-length", type=int)
    train.add_argument("--train-examples", type=int, help="use the first N training examples")
    train.add_argument("--seed", type=int)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--warmup-ratio", type=float)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    logging.basicConfig(format="ticketlab: %(message)s", level=logging.INFO)
    verb = args.pop("verb")
    try:
        if verb == "find":
            metric = args.pop("metric")
            TASKS.get(args["task"]).decider(metric)  # a bad --metric fails before any training
            print_rounds(find(**args), metric)
        elif verb == "tasks":
            print_tasks()
        elif verb == "apply":
            print(export_pruned(**args))
    except TicketlabError as error:
        print(f"ticketlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ticketlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def print_rounds(result: LotteryResult, metric: str | None = None) -> None:
    """The table closing `ticketlab find`: one row per round, every metric of every evaluation split, and the
    change of the deciding metric against the dense round 0."""
    task = TASKS.get(RunStore.open(result.path).config().task)
    split, decider = task.decider(metric)
    dense = result.rounds[0][split][decider]
    table = Table(title=f"IMP on {task.name} (matching decided by {split} {decider})", caption=str(result.path))
    columns = [(s, m) for s in task.eval_splits for m in task.metrics]
    for column in ("round", "sparsity", *(f"{s} {m}" for s, m in columns), f"Δ {decider} vs dense", "wall time"):
        table.add_column(column, justify="right")
    for record in result.rounds:
        table.add_row(
            str(record["round"]),
            f"{record['sparsity']:.1%}",
            *(f"{record[s][m]:.4f}" for s, m in columns),
            f"{record[split][decider] - dense:+.4f}",
            f"{record['wall_time_s']:.0f} s",
        )
    Console().print(table)


def print_tasks() -> None:
    """`ticketlab tasks`: every task, its metrics (* decides matching), evaluation splits and the files it reads."""
    console = Console(highlight=False)
    for name in TASKS:
        task = TASKS.get(name)
        metrics = ", ".join(f"{m}*" if m == task.metric else m for m in task.metrics)
        console.print(f"[bold]{name}[/bold]  {metrics}  on {', '.join(task.eval_splits)}")
        console.print(f"    {task.description}\n    --data: {task.files}", markup=False)
    console.print("* the metric that decides matching (change it with --metric)")


if __name__ == "__main__":
    sys.exit(main())
