"""The `ticketlab` command: one subcommand per verb."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.markdown import Markdown

from .config import PRECISIONS, DistillConfig, PruneConfig
from .controls import CONTROLS
from .earlybert import EarlyBirdConfig, earlybert
from .errors import TicketlabError
from .executors import RayExecutor, Unit, run_units
from .experiment import load_recipe, presets, run_experiment
from .export import FORMATS, export_pruned, export_ticket
from .lottery import find, grid, transfer
from .lottery.finders import FINDERS
from .models import EMBEDDED_MODELS, import_resnet, model_reference
from .models.vision import LAYOUTS as ARCHITECTURES
from .pretraining.records import METHODS as PRETRAINING_METHODS
from .pretraining.records import pretrain_record
from .pretraining.workflow import pretrain
from .pruning import SCHEDULES, SCOPES, listed_levels, parse_granularity
from .report.build import build_report, load_results
from .report.console import (
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
from .report.pretraining import SUMMARY
from .tasks import TASKS
from .train import end_launch

NAME_MAX = 255  # bytes of one file or folder name


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

    find_cmd = verbs.add_parser("find", help="find a ticket by iterative magnitude pruning (IMP) or --method")
    find_cmd.add_argument(
        "--model",
        type=_path,
        default="splade-tiny",
        help=f"{' | '.join(EMBEDDED_MODELS)} | a local Hugging Face folder",
    )
    find_cmd.add_argument("--task", default="rotten-tomatoes", help=f"one of: {', '.join(TASKS)}")
    find_cmd.add_argument("--data", type=_path, help="the task's data files instead of its default")
    find_cmd.add_argument(
        "--metric", help="the metric deciding matching, METRIC or SPLIT/METRIC (default: the paper's)"
    )
    find_cmd.add_argument(
        "--controls",
        type=_controls,
        default=(),
        help=f"control experiments at every sparsity: all, or some of {', '.join(CONTROLS)}",
    )
    find_cmd.add_argument(
        "--save-weights",
        action="store_true",
        help="keep every round's trained weights (default: the dense and the last)",
    )
    _add_run_options(find_cmd)
    _add_finder_options(find_cmd)
    _add_executor_options(find_cmd)

    transfer_cmd = verbs.add_parser("transfer", help="train a ticket found on one task on another task, from θ0")
    transfer_cmd.add_argument(
        "--ticket", type=_path, required=True, help="RUN[:ROUND] (default: its last round) or a mask file"
    )
    transfer_cmd.add_argument("--task", required=True, help=f"the target task, one of: {', '.join(TASKS)}")
    transfer_cmd.add_argument(
        "--model", type=_path, help="the ticket's base model, where it moved (default: as the ticket records it)"
    )
    transfer_cmd.add_argument("--data", type=_path, help="the target task's data files instead of its default")
    _add_run_options(transfer_cmd)

    grid_cmd = verbs.add_parser("grid", help="transfer the IMP tickets of every task to every other task")
    grid_cmd.add_argument(
        "--tasks", required=True, type=lambda text: text.split(","), help="comma-separated, e.g. mlm,rotten-tomatoes"
    )
    grid_cmd.add_argument("--model", type=_path, default="splade-tiny")
    grid_cmd.add_argument(
        "--data",
        action="append",
        type=_assignment,
        default=[],
        metavar="TASK=PATH",
        help="a task's data files (repeat)",
    )
    grid_cmd.add_argument("--target", type=_fraction, help="sparsity IMP prunes to (default: --sparsity)")
    _add_run_options(grid_cmd, sparsity_help="sparsity of the tickets transferred")
    _add_executor_options(grid_cmd)

    early_cmd = verbs.add_parser(
        "earlybert", help="EarlyBERT: an early-bird structured ticket (heads, FFN neurons), trained as a smaller model"
    )
    early_cmd.add_argument(
        "--model",
        type=_path,
        default="splade-tiny",
        help=f"{' | '.join(EMBEDDED_MODELS)} | a local Hugging Face folder",
    )
    early_cmd.add_argument("--task", default="rotten-tomatoes", help=f"one of: {', '.join(TASKS)}")
    early_cmd.add_argument("--data", type=_path, help="the task's data files instead of its default")
    search = early_cmd.add_argument_group("search (defaults: EarlyBERT's)")
    search.add_argument(
        "--heads",
        type=_ratio,
        default=EarlyBirdConfig.heads,
        help="fraction of each layer's attention heads pruned (default 1/3)",
    )
    search.add_argument(
        "--ffn",
        type=_ratio,
        default=EarlyBirdConfig.ffn,
        help="fraction of all FFN neurons pruned, ranked globally (default %(default)s)",
    )
    search.add_argument(
        "--l1",
        type=float,
        default=EarlyBirdConfig.l1,
        help="L1 coefficient on the slimming coefficients (default %(default)s)",
    )
    search.add_argument(
        "--draw-every",
        type=int,
        metavar="STEPS",
        help="steps between ticket draws (default: 1%% of the training steps)",
    )
    search.add_argument(
        "--window",
        type=int,
        default=EarlyBirdConfig.window,
        help="draws the early-bird test compares (default %(default)s)",
    )
    search.add_argument(
        "--threshold",
        type=float,
        default=EarlyBirdConfig.threshold,
        help="largest normalized Hamming distance of a stable ticket (default %(default)s)",
    )
    _add_run_options(early_cmd, pruning=False)

    report_cmd = verbs.add_parser(
        "report", help="tables, verdicts and plots of runs, from the run store alone (no training)"
    )
    report_cmd.add_argument("runs", type=_path, nargs="+", help="run folders, or folders of runs")
    report_cmd.add_argument("--out", type=_folder, help="report folder (default: report/ beside the runs)")
    report_cmd.add_argument(
        "--exports",
        type=_path,
        nargs="+",
        default=(),
        metavar="FOLDER",
        help="exports of these runs' tickets (ticketlab export), or folders of them: the accuracy/latency frontier",
    )
    report_cmd.add_argument(
        "--metric",
        action="append",
        type=_assignment,
        default=[],
        metavar="TASK=[SPLIT/]METRIC",
        help="the metric deciding matching for a task",
    )

    experiment_cmd = verbs.add_parser(
        "experiment", help="a recipe's lottery runs, controls, seeds and transfer grid, then its report"
    )
    recipe = experiment_cmd.add_mutually_exclusive_group(required=True)
    recipe.add_argument("--preset", help=f"one of: {', '.join(presets())}")
    recipe.add_argument("--recipe", type=_path, help="a recipe YAML file")
    experiment_cmd.add_argument("--out", type=_folder, help="run store folder (default: runs/<recipe name>)")
    experiment_cmd.add_argument("--seeds", type=int, help="override the recipe's number of seeds")
    _add_executor_options(experiment_cmd)
    experiment_cmd.add_argument(
        "--model", type=_path, help="override the recipe's model (e.g. your local bert-base-uncased folder)"
    )

    pretrain_cmd = verbs.add_parser(
        "pretrain", help="pre-train a ResNet on Fashion-MNIST (supervised, SimCLR or MoCo v2) as a model folder"
    )
    pretrain_cmd.add_argument("--method", choices=PRETRAINING_METHODS, default="supervised")
    pretrain_cmd.add_argument("--arch", dest="architecture", choices=ARCHITECTURES, default="resnet-small")
    pretrain_cmd.add_argument(
        "--data", type=_path, help="a folder with Fashion-MNIST's four IDX files (default: the Debian package's)"
    )
    pretrain_cmd.add_argument(
        "--out", type=_folder, default="runs/pretrained", help="where model folders go (default %(default)s)"
    )
    pretrain_cmd.add_argument(
        "--checkpoint-every", type=int, default=100, metavar="STEPS", help="checkpoint interval (default %(default)s)"
    )
    _add_training_options(pretrain_cmd)

    import_cmd = verbs.add_parser(
        "import-resnet", help="a torchvision-layout ResNet state dict (.pth, .safetensors) as a model folder"
    )
    import_cmd.add_argument(
        "weights",
        type=_path,
        help="the state dict file (ImageNet supervised, or SimCLR / MoCo in torchvision's layout)",
    )
    import_cmd.add_argument("--arch", dest="architecture", choices=ARCHITECTURES, required=True)
    import_cmd.add_argument("--in-channels", type=int, default=3)
    import_cmd.add_argument("--out", type=_folder, required=True, help="a new folder")

    verify_cmd = verbs.add_parser(
        "verify", help="check every file of runs against the digest its unit recorded; say what is damaged"
    )
    verify_cmd.add_argument("runs", type=_path, nargs="+", help="run folders, or folders of runs")

    verbs.add_parser("tasks", help="list the tasks with their metrics and the files they read")
    apply_cmd = verbs.add_parser(
        "apply", help="write a model with a ticket applied (pruned weights zeroed) as a Hugging Face folder"
    )
    apply_cmd.add_argument(
        "ticket", type=_path, help="a mask file, or a run folder (its last round; RUN:ROUND for another)"
    )
    apply_cmd.add_argument("--model", type=_path, default="splade-tiny", help="the ticket's base model")
    apply_cmd.add_argument("--out", type=_folder, required=True, help="a new folder")
    export_cmd = verbs.add_parser(
        "export", help="write a ticket as a model that ships: dense, sparse kernels, INT8 or ONNX (read: load_sparse)"
    )
    export_cmd.add_argument(
        "ticket",
        type=_path,
        help="RUN[:ROUND] (a round that kept its fine-tuned weights exports them, any other the ticket on the "
        "pre-trained weights), a mask file, or an EarlyBERT model folder",
    )
    export_cmd.add_argument(
        "--format", choices=list(FORMATS), default="sparse", help="; ".join(f"{k}: {v}" for k, v in FORMATS.items())
    )
    export_cmd.add_argument("--model", type=_path, help="the base model of a mask file (default: the one it names)")
    export_cmd.add_argument("--batch-size", type=int, default=1, help="deployment batch (kernels are timed on it)")
    export_cmd.add_argument("--length", type=int, default=128, help="deployment tokens per example")
    export_cmd.add_argument("--out", type=_folder, required=True, help="a new folder")
    ticket_cmd = verbs.add_parser("ticket", help="look at a ticket (ticketlab ticket show TICKET)")
    ticket_actions = ticket_cmd.add_subparsers(dest="action", required=True, parser_class=_Parser)
    show_cmd = ticket_actions.add_parser(
        "show", help="its provenance, sparsity per matrix type, and file size against the entropy bound"
    )
    show_cmd.add_argument(
        "ticket", type=_path, help="a mask file, or a run folder (its last round; RUN:ROUND for another)"
    )
    return parser


def _add_run_options(
    command: argparse.ArgumentParser, sparsity_help: str = "target sparsity", pruning: bool = True
) -> None:
    """Options of every verb that trains: where runs go, seeds, training and (with `pruning`) IMP's pruning."""
    command.add_argument(
        "--seeds", type=int, default=1, help="run with this many seeds: --seed, --seed + 1, ... (default 1)"
    )
    command.add_argument("--out", type=_folder, default="runs", help="run store folder (default %(default)s)")
    command.add_argument(
        "--checkpoint-every", type=int, default=100, metavar="STEPS", help="checkpoint interval (default %(default)s)"
    )
    _add_training_options(command)
    distill = command.add_argument_group("distillation of the tickets from the same seed's dense round 0")
    distill.add_argument(
        "--distill",
        action="store_true",
        default=None,
        help="tickets train on (1 - α)·task loss + α·T²·KL(dense ‖ ticket); the dense round itself does not",
    )
    distill.add_argument(
        "--distill-alpha",
        type=float,
        metavar="α",
        help=f"the distillation term's weight (default {DistillConfig.alpha})",
    )
    distill.add_argument(
        "--distill-temperature",
        type=float,
        metavar="T",
        help=f"the softmax temperature (default {DistillConfig.temperature}: movement pruning's)",
    )
    if not pruning:
        return
    command.add_argument(
        "--sparsity", type=_fraction, default=PruneConfig.sparsity, help=f"{sparsity_help} (default %(default)s)"
    )
    prune = command.add_argument_group(
        "pruning (defaults: the BERT-tickets code; image tasks: the CV code, geometric 0.2 with the head rewound)"
    )
    prune.add_argument(
        "--schedule",
        type=_schedule,
        help="linear: RATE of the original weights per round; geometric: of the remaining; or the levels themselves, "
        "rising to --sparsity (e.g. 0.5,0.7,0.8,0.9,0.95)",
    )
    prune.add_argument("--rate", type=_fraction, help="fraction pruned per round (default 0.1 linear, 0.2 geometric)")
    prune.add_argument(
        "--scope",
        choices=SCOPES,
        help="layers (default): one ranking over the transformer layers, the pooler alone at the same sparsity; "
        "global: one ranking of every matrix (the paper's); per-matrix: each matrix alone",
    )
    prune.add_argument(
        "--granularity",
        type=_granularity,
        help="weight (default): each weight alone; block:RxC: blocks of R rows x C columns kept or pruned whole; "
        "N:M (e.g. 2:4): at most N kept in every M consecutive inputs",
    )
    prune.add_argument(
        "--rewind-step", type=int, help="rewind to the weights after this step of round 0 (default 0: θ0)"
    )
    prune.add_argument(
        "--rewind-epoch", type=int, help="rewind to the weights after this epoch of round 0 (the CV code's way)"
    )
    prune.add_argument(
        "--rewind-head",
        action="store_true",
        default=None,
        help="reset the task head too (text tasks' default: it keeps its trained values)",
    )


def _add_finder_options(command: argparse.ArgumentParser) -> None:
    finder = command.add_argument_group("how each round's mask is drawn (ticketlab.lottery.finders)")
    finder.add_argument(
        "--method",
        dest="finder",
        choices=FINDERS,
        help="; ".join(f"{name}: {FINDERS.get(name).description}" for name in FINDERS)
        + " (default imp, the paper's; wanda: as good as IMP's tickets for two fine-tunes, measured in the README)",
    )
    finder.add_argument("--draw-every", type=int, metavar="STEPS", help="early-bird: steps between draws (default 10)")
    finder.add_argument("--settle-window", type=int, metavar="DRAWS", help="early-bird: draws compared (default 5)")
    finder.add_argument(
        "--settle-threshold", type=float, help="early-bird: the normalized Hamming distance of a settled draw (0.1)"
    )
    finder.add_argument(
        "--final-only",
        action="store_true",
        default=None,
        help="early-bird: only the target's ticket trains in full; earlier rounds stop once their draw settles",
    )
    finder.add_argument("--gmp-start", type=float, help="gmp: fraction of the steps where pruning starts (default 0)")
    finder.add_argument("--gmp-end", type=float, help="gmp: ... where it reaches the target (default 0.75)")
    finder.add_argument("--gmp-prunings", type=int, help="gmp: how many times it prunes (default 10)")
    finder.add_argument(
        "--calibration-examples", type=int, help="wanda: training examples weighing the weights (default 256)"
    )


def _add_training_options(command: argparse.ArgumentParser) -> None:
    train = command.add_argument_group("training (defaults: the task's recipe)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", dest="learning_rate", type=float)
    train.add_argument("--max-length", type=int)
    train.add_argument("--train-examples", type=int, help="use the first N training examples")
    train.add_argument("--seed", type=int, help="the first seed (default 0)")
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--warmup-ratio", type=float)
    train.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        help="fp32 (default); bf16: autocast, fp32 master weights; auto: bf16 where the machine runs it natively "
        "(a GPU, a CPU with AMX or AVX512-BF16), else fp32",
    )


def _path(text: str) -> str:
    """A path whose every name fits a file system (at most NAME_MAX bytes)."""
    long = next((part for part in Path(text).parts if len(os.fsencode(part)) > NAME_MAX), None)
    if long is not None:
        raise argparse.ArgumentTypeError(
            f"the name {long[:16]}... is longer than the {NAME_MAX} bytes a file name may have"
        )
    return text


def _folder(text: str) -> str:
    """--out: a folder, or a path where one can be made (no file in its place or above it)."""
    path = Path(_path(text))
    blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise argparse.ArgumentTypeError(f"{blocking} is a file, not a folder")
    return text


def _granularity(text: str) -> str:
    """A granularity ticketlab.pruning.parse_granularity reads, kept as written (it is a PruneConfig field)."""
    try:
        parse_granularity(text)
    except TicketlabError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _schedule(text: str) -> str:
    """A schedule's name (SCHEDULES) or its levels, kept as written (a PruneConfig field)."""
    try:
        listed_levels(text)
    except TicketlabError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if text not in SCHEDULES and not text[:1].isdigit():
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(SCHEDULES)}, or levels)")
    return text


def _ratio(text: str) -> float:
    """A fraction, also written as one, e.g. 1/3."""
    numerator, _, denominator = text.partition("/")
    try:
        value = float(numerator) / float(denominator or 1)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a fraction like 1/3") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 1)")
    return value


def _controls(text: str) -> tuple[str, ...]:
    names = tuple(CONTROLS) if text == "all" else tuple(text.split(","))
    unknown = [name for name in names if name not in CONTROLS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown control {unknown[0]!r}; known: all, {', '.join(CONTROLS)}")
    return names


def _assignment(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    if not key or not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form NAME=VALUE")
    return key, value


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    secondary = int(os.environ.get("RANK", 0)) > 0  # a launch's other processes (torchrun, accelerate launch)
    logging.basicConfig(format="ticketlab: %(message)s", level=logging.ERROR if secondary else logging.INFO)
    if secondary:  # the main process prints the tables
        sys.stdout = open(os.devnull, "w")
    verb = args.pop("verb")
    try:
        return VERBS[verb](args) or 0
    except TicketlabError as error:
        print(f"ticketlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ticketlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        end_launch()


def _report(args: dict) -> None:
    metrics = dict(args["metric"])
    out = build_report(args["runs"], args["out"], metrics, args["exports"])
    print_tables(args["runs"], metrics)
    print(out / "report.md")


def _experiment(args: dict) -> None:
    recipe = load_recipe(args["preset"] or args["recipe"])
    out = run_experiment(recipe, args["out"], args["seeds"], args["model"], executor=_executor(args))
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


def _add_executor_options(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("where the units run (see Scaling out in the README)")
    group.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: one after another in this process (default); ray: as Ray tasks (pip install 'ticketlab[ray]')",
    )
    group.add_argument("--address", help="ray: the cluster's address (auto, HOST:PORT; default: a local Ray)")
    group.add_argument("--cpus-per-run", type=float, help="ray: CPUs each unit takes (default 1)")
    group.add_argument("--gpus-per-run", type=float, help="ray: GPUs each unit takes (default 0)")


def _seeds(args: dict) -> list[int | None]:
    """The seeds of --seed S --seeds N: S, ..., S+N-1; [None] for neither (the recipe's seed, a ticket's own)."""
    count, first = args.pop("seeds"), args.pop("seed")
    if count < 1:
        raise TicketlabError(f"--seeds must be at least 1, got {count}")
    return [None] if first is None and count == 1 else list(range(first or 0, (first or 0) + count))


def _find(args: dict) -> None:
    seeds, metric, executor = _seeds(args), args.pop("metric"), _executor(args)
    TASKS.get(args["task"]).decider(metric)  # a bad --metric fails before any training
    args.update(  # absolute: a unit on another node, or in another working folder, reads and writes the same files
        model=model_reference(args["model"]),
        data=args["data"] and str(Path(args["data"]).resolve()),
        out=Path(args["out"]).resolve(),
    )
    units = [Unit(f"find seed {seed}", find, {**args, "seed": seed}, None) for seed in seeds]
    results = run_units(units, executor).values()
    for result in results:
        print_rounds(result, metric)
    if len(seeds) > 1 or args["controls"]:
        print_tables([result.path for result in results], {args["task"]: metric} if metric else None)


def _transfer(args: dict) -> None:
    for seed in _seeds(args):
        print_transfer(args["ticket"], args["task"], seed, transfer(**args, seed=seed))


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


VERBS = {  # verb -> what it does with its parsed arguments (an int: the exit status)
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


if __name__ == "__main__":
    sys.exit(main())
