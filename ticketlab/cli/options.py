"""The options several verbs share, made from the settings dataclasses they set: each option's dest is its field's
name, its type the field's, and the default its help shows the field's default, so that none is written twice."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from fractions import Fraction
from typing import Any, Callable, Mapping

from ..catalog import FINDER_SETTINGS, FINDERS, SCOPES
from ..config import PRECISIONS, DistillConfig, PruneConfig, TrainConfig
from ..earlybert.settings import DRAWS_PER_TRAINING, EarlyBirdConfig
from ..executors import RayExecutor
from ..pruning.schedules import DEFAULT_RATES
from . import values

SCOPE_HELP = {
    "layers": "one ranking over the transformer layers, the pooler alone at the same sparsity",
    "global": "one ranking of every matrix (the paper's)",
    "per-matrix": "each matrix alone",
}
GRANULARITY_HELP = {
    "weight": "each weight alone",
    "block:RxC": "blocks of R rows x C columns kept or pruned whole",
    "N:M (e.g. 2:4)": "at most N kept in every M consecutive inputs",
}
PRECISION_HELP = {
    "fp32": "",
    "bf16": "autocast, fp32 master weights",
    "auto": "bf16 where the machine runs it natively (a GPU, a CPU with AMX or AVX512-BF16), else fp32",
}


class Fields:
    """Adds options that set fields of the dataclass `settings` to `group`: an option's dest is its field's name
    (after `prefix`), its type the field's unless given (a bool: a flag), and "{default}" in its help the field's
    default. Its own default is the field's with `defaults`, else None: the task's, the recipe's or the workflow's
    default applies."""

    def __init__(self, group: Any, settings: type, *, prefix: str = "", defaults: bool = False) -> None:
        self.group, self.prefix, self.defaults = group, prefix, defaults
        self.fields = {field.name: field for field in dataclasses.fields(settings)}
        self.hints = typing.get_type_hints(settings)

    def add(
        self, name: str, *flags: str, help: str | None = None, show: Callable[[Any], str] | None = None, **kwargs: Any
    ) -> None:
        default, hint = self.fields[name].default, self.hints[name]
        if hint is bool:
            kwargs.setdefault("action", "store_true")
        else:
            kwargs.setdefault("type", _value_type(hint))
        if help is not None:
            help = help.replace("{default}", (show or _shown)(default))
        dest = self.prefix + name
        self.group.add_argument(
            *(flags or [f"--{dest.replace('_', '-')}"]),
            dest=dest,
            default=default if self.defaults else None,
            help=help,
            **kwargs,
        )


def _value_type(hint: Any) -> Callable[[str], Any] | None:
    """What reads a field's value from the command line (None: the text itself)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return None if hint is str else hint


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _listed(described: Mapping[str, str], default: str) -> str:
    """Choices with what each does, the default marked: "a (default): does this; b: does that"."""
    return "; ".join(
        f"{name}{' (default)' if name == default else ''}{f': {text}' if text else ''}"
        for name, text in described.items()
    )


def add_run_options(
    command: argparse.ArgumentParser, sparsity_help: str = "target sparsity", pruning: bool = True
) -> None:
    """Options of every verb that trains: where runs go, seeds, training and (with `pruning`) IMP's pruning."""
    command.add_argument(
        "--seeds", type=int, default=1, help="run with this many seeds: --seed, --seed + 1, ... (default %(default)s)"
    )
    command.add_argument("--out", type=values.folder, default="runs", help="run store folder (default %(default)s)")
    command.add_argument(
        "--checkpoint-every", type=int, default=100, metavar="STEPS", help="checkpoint interval (default %(default)s)"
    )
    add_tracking_options(command)
    add_training_options(command)
    distill = command.add_argument_group("distillation of the tickets from the same seed's dense round 0")
    distill.add_argument(
        "--distill",
        action="store_true",
        default=None,
        help="tickets train on (1 - α)·task loss + α·T²·KL(dense ‖ ticket); the dense round itself does not",
    )
    fields = Fields(distill, DistillConfig, prefix="distill_")
    fields.add("alpha", metavar="α", help="the distillation term's weight (default {default})")
    fields.add("temperature", metavar="T", help="the softmax temperature (default {default}: movement pruning's)")
    if not pruning:
        return
    Fields(command, PruneConfig, defaults=True).add(
        "sparsity", type=values.fraction, help=f"{sparsity_help} (default {{default}})"
    )
    prune = command.add_argument_group(
        "pruning (defaults: the BERT-tickets code; image tasks: the CV code, geometric 0.2 with the head rewound)"
    )
    fields = Fields(prune, PruneConfig)
    fields.add(
        "schedule",
        type=values.schedule,
        help="linear: RATE of the original weights per round; geometric: of the remaining; or the levels themselves, "
        "rising to --sparsity (e.g. 0.5,0.7,0.8,0.9,0.95)",
    )
    rates = ", ".join(f"{rate:g} {schedule}" for schedule, rate in DEFAULT_RATES.items())
    fields.add("rate", type=values.fraction, help=f"fraction pruned per round (default {rates})")
    fields.add("scope", choices=SCOPES, help=_listed(SCOPE_HELP, PruneConfig.scope))
    fields.add("granularity", type=values.granularity, help=_listed(GRANULARITY_HELP, PruneConfig.granularity))
    fields.add("rewind_step", help="rewind to the weights after this step of round 0 (default {default}: θ0)")
    prune.add_argument(
        "--rewind-epoch", type=int, help="rewind to the weights after this epoch of round 0 (the CV code's way)"
    )
    fields.add("rewind_head", help="reset the task head too (text tasks' default: it keeps its trained values)")


def add_finder_options(command: argparse.ArgumentParser) -> None:
    """--method (PruneConfig.finder) and the settings of each finder, named after it."""
    group = command.add_argument_group("how each round's mask is drawn (ticketlab.lottery.finders)")
    fields = Fields(group, PruneConfig)
    fields.add(
        "finder",
        "--method",
        choices=FINDERS,
        help="; ".join(f"{name}: {description}" for name, description in FINDERS.items())
        + " (default {default}, the paper's; wanda: as good as IMP's tickets for two fine-tunes, measured in the "
        "README)",
    )
    finder = {setting: name for name, settings in FINDER_SETTINGS.items() for setting in settings}

    def add(setting: str, help: str, **kwargs: Any) -> None:
        fields.add(setting, help=f"{finder[setting]}: {help}", **kwargs)

    add("draw_every", "steps between draws (default {default})", metavar="STEPS")
    add("settle_window", "draws compared (default {default})", metavar="DRAWS")
    add("settle_threshold", "the normalized Hamming distance of a settled draw ({default})")
    add("final_only", "only the target's ticket trains in full; earlier rounds stop once their draw settles")
    add("gmp_start", "fraction of the steps where pruning starts (default {default})")
    add("gmp_end", "... where it reaches the target (default {default})")
    add("gmp_prunings", "how many times it prunes (default {default})")
    add("calibration_examples", "training examples weighing the weights (default {default})")


def add_tracking_options(command: argparse.ArgumentParser) -> None:
    """--log-with: the experiment trackers every unit logs to (ticketlab.train.tracking); like --checkpoint-every, not a
    setting of the run: it names no run and changes no result."""
    command.add_argument(
        "--log-with",
        action="extend",
        type=values.names,
        default=[],
        metavar="TRACKER",
        help="log every unit's loss, learning rate, evaluation and settings: tensorboard (in RUN/logs/; repeat or "
        "separate with commas; pip install 'ticketlab[track]'; default: none)",
    )


def add_training_options(command: argparse.ArgumentParser) -> None:
    """TrainConfig's options (all but max_grad_norm)."""
    fields = Fields(command.add_argument_group("training (defaults: the task's recipe)"), TrainConfig)
    fields.add("epochs")
    fields.add("batch_size")
    fields.add("learning_rate", "--lr")
    fields.add("max_length")
    fields.add("train_examples", help="use the first N training examples")
    fields.add("seed", help="the first seed (default {default})")
    fields.add("weight_decay")
    fields.add("warmup_ratio")
    fields.add("precision", choices=("auto", *PRECISIONS), help=_listed(PRECISION_HELP, TrainConfig.precision))
    fields.add(
        "head_warmup_epochs",
        metavar="EPOCHS",
        help="train the newly initialised task head alone (the backbone frozen) for EPOCHS first; every round and "
        "control starts from it (an MLM head that knows the vocabulary; default {default})",
    )
    fields.add("head_warmup_lr", metavar="LR", help="the warm-up's learning rate (default: --lr)")


def add_search_options(command: argparse.ArgumentParser) -> None:
    """EarlyBERT's search: EarlyBirdConfig's options, with its defaults."""
    fields = Fields(command.add_argument_group("search (defaults: EarlyBERT's)"), EarlyBirdConfig, defaults=True)
    fields.add(
        "heads",
        type=values.ratio,
        help="fraction of each layer's attention heads pruned (default {default})",
        show=lambda value: str(Fraction(value).limit_denominator(100)),
    )
    fields.add("ffn", type=values.ratio, help="fraction of all FFN neurons pruned, ranked globally (default {default})")
    fields.add("l1", help="L1 coefficient on the slimming coefficients (default {default})")
    share = f"{100 / DRAWS_PER_TRAINING:g}%%"
    fields.add(
        "draw_every", metavar="STEPS", help=f"steps between ticket draws (default: {share} of the training steps)"
    )
    fields.add("window", help="draws the early-bird test compares (default {default})")
    fields.add("threshold", help="largest normalized Hamming distance of a stable ticket (default {default})")


def add_executor_options(command: argparse.ArgumentParser) -> None:
    """Where the units run: --executor, and RayExecutor's options."""
    group = command.add_argument_group("where the units run (see Scaling out in the README)")
    group.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: one after another in this process (default); ray: as Ray tasks (pip install 'ticketlab[ray]')",
    )
    fields = Fields(group, RayExecutor)
    fields.add("address", help="ray: the cluster's address (auto, HOST:PORT; default: a local Ray)")
    fields.add("cpus_per_run", help="ray: CPUs each unit takes (default {default})")
    fields.add("gpus_per_run", help="ray: GPUs each unit takes (default {default})")
