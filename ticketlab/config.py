"""Frozen run settings; a stable hash of the resolved settings names the run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

from .arms import IMP
from .errors import TicketlabError
from .hardware import native_bf16
from .pruning.schedules import listed_levels, sparsity_schedule
from .pruning.settle import SETTLE_THRESHOLD, SETTLE_WINDOW

T = TypeVar("T")
PRECISIONS = ("fp32", "bf16")  # a run's resolved precision; "auto" (`resolve_precision`) picks one of them
SEED_LIMIT = 2**32  # seeds are in [0, 2^32), numpy's range


def check_types(settings: Any, where: str = "") -> None:
    """A one-line error (prefixed by `where`) for a dataclass field whose value is not of its annotated type;
    an int counts as a float, a bool as no number."""
    hints = typing.get_type_hints(type(settings))
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if not _is_a(value, hints[f.name]):
            raise TicketlabError(f"{where}{f.name} must be {f.type}, got {value!r}")


def _is_a(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(_is_a(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(_is_a(k, args[0]) and _is_a(v, args[1]) for k, v in value.items())
    if isinstance(value, bool):
        return hint is bool
    return isinstance(value, (int, float) if hint is float else hint)


def settings_hash(settings: Mapping[str, Any], separators: tuple[str, str] = (", ", ": ")) -> str:
    """The 10 hex digits that name a folder of results by its settings: SHA-256 of their sorted JSON. (Run folders hash
    the compact JSON, EarlyBERT branches and pre-trained models the default one: the names stores already carry.)"""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=separators).encode()).hexdigest()[:10]


def check_range(
    name: str, value: float, low: float, high: float = math.inf, *, above_low: bool = False, below_high: bool = False
) -> None:
    """A one-line error unless `value` is finite and in [low, high] (open at low with `above_low`, at high with
    `below_high`)."""
    if not (
        math.isfinite(value)
        and (value > low if above_low else value >= low)
        and (value < high if below_high else value <= high)
    ):
        interval = (
            f"{'(' if above_low else '['}{low:g}, {high:g}{']' if math.isfinite(high) and not below_high else ')'}"
        )
        raise TicketlabError(f"{name} must be a finite number in {interval}, got {value!r}")


def resolve_precision(precision: str | None) -> str | None:
    """A run's precision: "auto" is bf16 where the machine runs it natively (a GPU; a CPU with AMX or AVX512-BF16),
    fp32 elsewhere; None stays None (the default, fp32)."""
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision  # any other value is TrainConfig's to check


def from_options(cls: type[T], options: Mapping[str, Any], where: str = "") -> T:
    """`cls(**options)` for a self-checking dataclass, with one-line errors prefixed by `where` (an unknown field
    too)."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TicketlabError(f"{where}unknown setting {unknown[0]!r}; known: {', '.join(known)}")
    try:
        return cls(**options)
    except TicketlabError as error:
        raise TicketlabError(f"{where}{error}") from None


@dataclass(frozen=True)
class TrainConfig:
    """One fine-tuning run (one IMP round)."""

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 2e-5
    max_length: int = 128
    train_examples: int | None = None  # None: the whole training split
    seed: int = 0
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    precision: str = "fp32"  # or "bf16": autocast of forward passes, fp32 master weights (see PRECISIONS)
    head_warmup_epochs: int = 0  # epochs of the newly initialised task head alone, the backbone frozen, before round 0
    head_warmup_lr: float | None = None  # its learning rate (None: learning_rate); a head alone learns at a higher one

    def __post_init__(self) -> None:
        check_types(self)
        if self.head_warmup_epochs < 0:
            raise TicketlabError(f"head_warmup_epochs must be >= 0, got {self.head_warmup_epochs}")
        if self.precision not in PRECISIONS:
            raise TicketlabError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        counts = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "train_examples": self.train_examples,
        }
        for name, count in counts.items():
            if count is not None and count < 1:
                raise TicketlabError(f"{name} must be at least 1, got {count}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise TicketlabError(f"seed must be in [0, 2^32), got {self.seed}")
        check_range("learning_rate", self.learning_rate, 0.0, above_low=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        check_range("max_grad_norm", self.max_grad_norm, 0.0, above_low=True)
        if self.head_warmup_lr is not None:
            if not self.head_warmup_epochs:
                raise TicketlabError("head_warmup_lr is a setting of the head warm-up, and head_warmup_epochs is 0")
            check_range("head_warmup_lr", self.head_warmup_lr, 0.0, above_low=True)

    def settings(self) -> dict[str, Any]:
        """Its fields as stored and hashed: those added after runs were stored are left out at their defaults."""
        return _without_defaults(self, ADDED_TRAIN_SETTINGS)


@dataclass(frozen=True)
class PruneConfig:
    """How a run finds its tickets: what it prunes and how between rounds, how it rewinds (defaults: the BERT-tickets
    code's IMP), and the settings of the other finders (ticketlab.lottery.finders)."""

    sparsity: float = 0.9  # the target
    method: str = "magnitude"  # the ranking IMP prunes by (ticketlab.pruning.PRUNING_METHODS)
    schedule: str = "linear"  # linear: `rate` of the original weights per round; geometric: of the remaining; or
    # the levels themselves, "0.5,0.7,0.9" (ticketlab.pruning.schedules)
    rate: float = 0.1
    scope: str = "layers"  # or "global" (the paper's), "per-matrix": see ticketlab.pruning.SCOPES
    rewind_step: int = 0  # 0: rewind to the pre-trained weights θ0; i: to the weights after step i of round 0
    rewind_head: bool = False  # the paper's code keeps the task head's trained values across rounds
    granularity: str = "weight"  # or "block:RxC", "N:M": see ticketlab.pruning.granularity
    finder: str = IMP  # how each round's mask is drawn: ticketlab.lottery.finders.FINDERS
    draw_every: int = 10  # early-bird: steps between two draws of the next round's mask
    settle_window: int = SETTLE_WINDOW  # early-bird: the draws the newest must lie close to
    settle_threshold: float = SETTLE_THRESHOLD  # early-bird: the normalized Hamming distance counted as close
    final_only: bool = False  # early-bird: only the target's ticket is trained in full; earlier rounds stop settled
    gmp_start: float = 0.0  # gmp: the fraction of the run's steps where pruning starts
    gmp_end: float = 0.75  # gmp: ... and where it reaches the target
    gmp_prunings: int = 10  # gmp: how many times it prunes between them
    calibration_examples: int = 256  # wanda: the training examples whose activations weigh the weights

    def __post_init__(self) -> None:
        # torch-bound checks, imported here: the settings' classes load without torch (the command's help)
        from .pruning import PRUNING_METHODS, check_levels, check_scope, parse_granularity

        check_types(self)
        levels = self.levels()
        PRUNING_METHODS.get(self.method)
        check_scope(self.scope)
        check_levels(parse_granularity(self.granularity), levels)
        if self.rewind_step < 0:
            raise TicketlabError(f"rewind_step must be >= 0, got {self.rewind_step}")
        for name in ("draw_every", "settle_window", "gmp_prunings", "calibration_examples"):
            if getattr(self, name) < 1:
                raise TicketlabError(f"{name} must be at least 1, got {getattr(self, name)}")
        check_range("settle_threshold", self.settle_threshold, 0.0, 1.0, above_low=True, below_high=True)
        check_range("gmp_start", self.gmp_start, 0.0, 1.0)
        check_range("gmp_end", self.gmp_end, self.gmp_start, 1.0, above_low=True)

    def settings(self) -> dict[str, Any]:
        """Its fields as stored and hashed: those added after runs were stored are left out at their defaults."""
        return _without_defaults(self, ADDED_SETTINGS)

    def levels(self) -> list[float]:
        """Sparsity of every round, the dense round 0 first (raises on a bad target, rate or schedule)."""
        return sparsity_schedule(self.schedule, self.rate, self.sparsity)


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation of a run's tickets from its dense round 0: each ticket trains on
    (1 - alpha) * task loss + alpha * T^2 * KL(teacher || student) at temperature T (a regression's score: alpha *
    MSE). Defaults: movement pruning's (Sanh et al. 2020: alpha 0.9, T 2; DistilBERT's T 2 too)."""

    alpha: float = 0.9
    temperature: float = 2.0

    def __post_init__(self) -> None:
        check_types(self)
        check_range("distill_alpha", self.alpha, 0.0, 1.0)
        check_range("distill_temperature", self.temperature, 0.0, above_low=True)


# Settings added after runs were stored: left out of a run's settings at their defaults, so that those runs keep their
# names (hashes) and configs. Their defaults never change.
ADDED_TRAIN_SETTINGS = ("precision", "head_warmup_epochs", "head_warmup_lr")
ADDED_SETTINGS = (
    "granularity",
    "finder",
    "draw_every",
    "settle_window",
    "settle_threshold",
    "final_only",
    "gmp_start",
    "gmp_end",
    "gmp_prunings",
    "calibration_examples",
)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a lottery run's results."""

    model: str  # embedded name or local directory
    model_hash: str  # fingerprint of the weights file: a changed model makes a new run
    task: str
    data: str | None
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    distill: DistillConfig | None = None  # None: tickets train on the task's loss alone

    def to_dict(self) -> dict[str, Any]:
        settings = {**dataclasses.asdict(self), "train": self.train.settings(), "prune": self.prune.settings()}
        if self.distill is None:
            del settings["distill"]
        return settings

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        distill = raw.get("distill")
        return cls(
            **{
                **raw,
                "train": TrainConfig(**raw["train"]),
                "prune": PruneConfig(**raw["prune"]),
                "distill": None if distill is None else DistillConfig(**distill),
            }
        )

    def hash(self) -> str:
        return settings_hash(self.to_dict(), separators=(",", ":"))

    def name(self) -> str:
        """Readable prefix plus hash, e.g. rotten-tomatoes_splade-tiny_linear-0.9_3f2a9c01de (gmp-linear-0.9: another
        finder than IMP; distill-linear-0.9: tickets distilled; bf16-linear-0.9: trained in bf16; warmhead-linear-0.9:
        the task head warmed up first)."""
        model = self.model.rstrip("/").split("/")[-1]
        finder = "" if self.prune.finder == PruneConfig.finder else f"{self.prune.finder}-"
        distill = "" if self.distill is None else "distill-"
        precision = "" if self.train.precision == TrainConfig.precision else f"{self.train.precision}-"
        warmed = "warmhead-" if self.train.head_warmup_epochs else ""
        schedule = "levels" if listed_levels(self.prune.schedule) else self.prune.schedule
        schedule = f"{schedule}-{self.prune.sparsity:g}"
        return f"{self.task}_{model}_{finder}{distill}{precision}{warmed}{schedule}_{self.hash()}"


def _without_defaults(settings: Any, added: tuple[str, ...]) -> dict[str, Any]:
    """A dataclass's fields, less those of `added` at their defaults."""
    fields = dataclasses.asdict(settings)
    return {
        name: value for name, value in fields.items() if name not in added or value != getattr(type(settings), name)
    }
