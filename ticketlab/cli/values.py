"""What the command's arguments may be: one parser per kind of value, each a one-line error for a bad one."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..catalog import CONTROLS
from ..errors import TicketlabError
from ..pruning.schedules import SCHEDULES, listed_levels

NAME_MAX = 255  # bytes of one file or folder name


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def fraction(text: str) -> float:
    """A number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 1)")
    return value


def ratio(text: str) -> float:
    """A fraction, also written as one, e.g. 1/3."""
    numerator, _, denominator = text.partition("/")
    try:
        value = float(numerator) / float(denominator or 1)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a fraction like 1/3") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 1)")
    return value


def path(text: str) -> str:
    """A path whose every name fits a file system (at most NAME_MAX bytes)."""
    long = next((part for part in Path(text).parts if len(os.fsencode(part)) > NAME_MAX), None)
    if long is not None:
        raise argparse.ArgumentTypeError(
            f"the name {long[:16]}... is longer than the {NAME_MAX} bytes a file name may have"
        )
    return text


def folder(text: str) -> str:
    """--out: a folder, or a path where one can be made (no file in its place or above it)."""
    where = Path(path(text))
    blocking = next((p for p in (where, *where.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise argparse.ArgumentTypeError(f"{blocking} is a file, not a folder")
    return text


def granularity(text: str) -> str:
    """A granularity ticketlab.pruning.parse_granularity reads, kept as written (it is a PruneConfig field)."""
    from ..pruning import parse_granularity  # torch: imported once a command runs, not for its help

    try:
        parse_granularity(text)
    except TicketlabError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def schedule(text: str) -> str:
    """A schedule's name (SCHEDULES) or its levels, kept as written (a PruneConfig field)."""
    try:
        listed_levels(text)
    except TicketlabError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if text not in SCHEDULES and not text[:1].isdigit():
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(SCHEDULES)}, or levels)")
    return text


def levels(text: str) -> list[float]:
    """Sparsities written as "0.5,0.7,0.9": rising, each in (0, 1)."""
    try:
        listed = listed_levels(text)
    except TicketlabError as error:
        raise argparse.ArgumentTypeError(str(error).replace("schedule", "sparsities")) from None
    if listed is None:
        raise argparse.ArgumentTypeError(f"expected sparsities like 0.5,0.7,0.9, got {text!r}")
    return listed


def controls(text: str) -> tuple[str, ...]:
    """Control experiments: all, or names of CONTROLS separated by commas."""
    names = tuple(CONTROLS) if text == "all" else tuple(text.split(","))
    unknown = [name for name in names if name not in CONTROLS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown control {unknown[0]!r}; known: all, {', '.join(CONTROLS)}")
    return names


def assignment(text: str) -> tuple[str, str]:
    """NAME=VALUE, as (NAME, VALUE)."""
    key, _, value = text.partition("=")
    if not key or not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form NAME=VALUE")
    return key, value


def names(text: str) -> list[str]:
    """Names separated by commas."""
    return text.split(",")
