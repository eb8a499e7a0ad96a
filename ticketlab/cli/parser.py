"""The `ticketlab` command's parser: each verb and its own options (options.py: those verbs share)."""

from __future__ import annotations

import argparse

from ..catalog import CONTROLS, EMBEDDED_MODELS, FORMATS, PRETRAINING_TASKS, TASKS, presets
from ..catalog import LAYOUTS as ARCHITECTURES
from . import values
from .options import (
    add_executor_options,
    add_finder_options,
    add_run_options,
    add_search_options,
    add_tracking_options,
    add_training_options,
)

TICKET_HELP = "a mask file, or a run folder (its last round; RUN:ROUND for another)"
RUNS_HELP = "run folders, or folders of runs"


def build_parser() -> argparse.ArgumentParser:
    parser = values.Parser(prog="ticketlab", description="Lottery tickets in pre-trained networks.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=values.Parser)

    find_cmd = verbs.add_parser("find", help="find a ticket by iterative magnitude pruning (IMP) or --method")
    _add_task_options(find_cmd)
    find_cmd.add_argument(
        "--metric", help="the metric deciding matching, METRIC or SPLIT/METRIC (default: the paper's)"
    )
    find_cmd.add_argument(
        "--controls",
        type=values.controls,
        default=(),
        help=f"control experiments at every sparsity: all, or some of {', '.join(CONTROLS)}",
    )
    find_cmd.add_argument(
        "--controls-at",
        type=values.levels,
        metavar="LEVELS",
        help="run the controls only at these sparsities, e.g. 0.5,0.7,0.9 (each one of the schedule's levels)",
    )
    find_cmd.add_argument(
        "--save-weights",
        action="store_true",
        help="keep every round's trained weights (default: the dense and the last)",
    )
    add_run_options(find_cmd)
    add_finder_options(find_cmd)
    add_executor_options(find_cmd)

    transfer_cmd = verbs.add_parser("transfer", help="train a ticket found on one task on another task, from θ0")
    transfer_cmd.add_argument(
        "--ticket", type=values.path, required=True, help="RUN[:ROUND] (default: its last round) or a mask file"
    )
    transfer_cmd.add_argument("--task", required=True, help=f"the target task, one of: {', '.join(TASKS)}")
    transfer_cmd.add_argument(
        "--model", type=values.path, help="the ticket's base model, where it moved (default: as the ticket records it)"
    )
    transfer_cmd.add_argument("--data", type=values.path, help="the target task's data files instead of its default")
    add_run_options(transfer_cmd)

    grid_cmd = verbs.add_parser("grid", help="transfer the IMP tickets of every task to every other task")
    grid_cmd.add_argument("--tasks", required=True, type=values.names, help="comma-separated, e.g. mlm,rotten-tomatoes")
    grid_cmd.add_argument("--model", type=values.path, default="splade-tiny")
    _add_assignments(grid_cmd, "--data", "TASK=PATH", "a task's data files (repeat)")
    grid_cmd.add_argument("--target", type=values.fraction, help="sparsity IMP prunes to (default: --sparsity)")
    add_run_options(grid_cmd, sparsity_help="sparsity of the tickets transferred")
    add_executor_options(grid_cmd)

    early_cmd = verbs.add_parser(
        "earlybert", help="EarlyBERT: an early-bird structured ticket (heads, FFN neurons), trained as a smaller model"
    )
    _add_task_options(early_cmd)
    add_search_options(early_cmd)
    add_run_options(early_cmd, pruning=False)

    report_cmd = verbs.add_parser(
        "report", help="tables, verdicts and plots of runs, from the run store alone (no training)"
    )
    report_cmd.add_argument("runs", type=values.path, nargs="+", help=RUNS_HELP)
    report_cmd.add_argument("--out", type=values.folder, help="report folder (default: report/ beside the runs)")
    report_cmd.add_argument(
        "--exports",
        type=values.path,
        nargs="+",
        default=(),
        metavar="FOLDER",
        help="exports of these runs' tickets (ticketlab export), or folders of them: the accuracy/latency frontier",
    )
    _add_assignments(report_cmd, "--metric", "TASK=[SPLIT/]METRIC", "the metric deciding matching for a task")

    experiment_cmd = verbs.add_parser(
        "experiment", help="a recipe's lottery runs, controls, seeds and transfer grid, then its report"
    )
    recipe = experiment_cmd.add_mutually_exclusive_group(required=True)
    recipe.add_argument("--preset", help=f"one of: {', '.join(presets())}")
    recipe.add_argument("--recipe", type=values.path, help="a recipe YAML file")
    experiment_cmd.add_argument("--out", type=values.folder, help="run store folder (default: runs/<recipe name>)")
    experiment_cmd.add_argument("--seeds", type=int, help="override the recipe's number of seeds")
    add_executor_options(experiment_cmd)
    add_tracking_options(experiment_cmd)
    experiment_cmd.add_argument(
        "--model", type=values.path, help="override the recipe's model (e.g. your local bert-base-uncased folder)"
    )

    pretrain_cmd = verbs.add_parser(
        "pretrain", help="pre-train a ResNet on Fashion-MNIST (supervised, SimCLR or MoCo v2) as a model folder"
    )
    pretrain_cmd.add_argument("--method", choices=PRETRAINING_TASKS, default="supervised")
    pretrain_cmd.add_argument("--arch", dest="architecture", choices=ARCHITECTURES, default="resnet-small")
    pretrain_cmd.add_argument(
        "--data", type=values.path, help="a folder with Fashion-MNIST's four IDX files (default: the Debian package's)"
    )
    pretrain_cmd.add_argument(
        "--out", type=values.folder, default="runs/pretrained", help="where model folders go (default %(default)s)"
    )
    pretrain_cmd.add_argument(
        "--checkpoint-every", type=int, default=100, metavar="STEPS", help="checkpoint interval (default %(default)s)"
    )
    add_tracking_options(pretrain_cmd)
    add_training_options(pretrain_cmd)

    import_cmd = verbs.add_parser(
        "import-resnet", help="a torchvision-layout ResNet state dict (.pth, .safetensors) as a model folder"
    )
    import_cmd.add_argument(
        "weights",
        type=values.path,
        help="the state dict file (ImageNet supervised, or SimCLR / MoCo in torchvision's layout)",
    )
    import_cmd.add_argument("--arch", dest="architecture", choices=ARCHITECTURES, required=True)
    import_cmd.add_argument("--in-channels", type=int, default=3)
    import_cmd.add_argument("--out", type=values.folder, required=True, help="a new folder")

    verify_cmd = verbs.add_parser(
        "verify", help="check every file of runs or export folders against its recorded digest; say what is damaged"
    )
    verify_cmd.add_argument("runs", type=values.path, nargs="+", help=f"{RUNS_HELP}, or export folders")

    verbs.add_parser("tasks", help="list the tasks with their metrics and the files they read")
    apply_cmd = verbs.add_parser(
        "apply", help="write a model with a ticket applied (pruned weights zeroed) as a Hugging Face folder"
    )
    apply_cmd.add_argument("ticket", type=values.path, help=TICKET_HELP)
    apply_cmd.add_argument("--model", type=values.path, default="splade-tiny", help="the ticket's base model")
    apply_cmd.add_argument("--out", type=values.folder, required=True, help="a new folder")
    export_cmd = verbs.add_parser(
        "export", help="write a ticket as a model that ships: dense, sparse kernels, INT8 or ONNX (read: load_sparse)"
    )
    export_cmd.add_argument(
        "ticket",
        type=values.path,
        help="RUN[:ROUND] (a round that kept its fine-tuned weights exports them, any other the ticket on the "
        "pre-trained weights), a mask file, or an EarlyBERT model folder",
    )
    export_cmd.add_argument(
        "--format", choices=list(FORMATS), default="sparse", help="; ".join(f"{k}: {v}" for k, v in FORMATS.items())
    )
    export_cmd.add_argument(
        "--model", type=values.path, help="the base model of a mask file (default: the one it names)"
    )
    export_cmd.add_argument("--batch-size", type=int, default=1, help="deployment batch (kernels are timed on it)")
    export_cmd.add_argument("--length", type=int, default=128, help="deployment tokens per example")
    export_cmd.add_argument("--out", type=values.folder, required=True, help="a new folder")
    ticket_cmd = verbs.add_parser("ticket", help="look at a ticket (ticketlab ticket show TICKET)")
    ticket_actions = ticket_cmd.add_subparsers(dest="action", required=True, parser_class=values.Parser)
    show_cmd = ticket_actions.add_parser(
        "show", help="its provenance, sparsity per matrix type, and file size against the entropy bound"
    )
    show_cmd.add_argument("ticket", type=values.path, help=TICKET_HELP)
    return parser


def _add_task_options(command: argparse.ArgumentParser) -> None:
    """The model, the task and its data of a verb that makes a run (find, earlybert)."""
    command.add_argument(
        "--model",
        type=values.path,
        default="splade-tiny",
        help=f"{' | '.join(EMBEDDED_MODELS)} | a local Hugging Face folder",
    )
    command.add_argument("--task", default="rotten-tomatoes", help=f"one of: {', '.join(TASKS)}")
    command.add_argument("--data", type=values.path, help="the task's data files instead of its default")


def _add_assignments(parser: argparse.ArgumentParser, flag: str, metavar: str, help: str) -> None:
    """An option given once per task as TASK=VALUE, collected as (task, value) pairs."""
    parser.add_argument(flag, action="append", type=values.assignment, default=[], metavar=metavar, help=help)
