"""The catalog, ticketlab's torch-free list of names, is what the registries register, and it keeps the command's
help fast: the parser loads without torch or transformers, and `--help` answers from a fresh process at once."""

import subprocess
import sys
import time

import pytest

from ticketlab import catalog
from ticketlab.controls import CONTROLS
from ticketlab.lottery.finders import FINDERS
from ticketlab.pretrain import PRETRAINING_METHODS
from ticketlab.tasks import TASKS

HEAVY = ("torch", "transformers", "sklearn", "pandas", "accelerate", "safetensors")
HELP_BOUND_S = 3.0  # generous: measured 0.08 s on the project's 2-core machine, under load (closing note of issue 31)


@pytest.mark.parametrize(
    "registry, names",
    [(TASKS, catalog.TASKS), (CONTROLS, catalog.CONTROLS), (FINDERS, catalog.FINDERS)],
    ids=["tasks", "controls", "finders"],
)
def test_every_name_of_the_catalog_is_registered_and_none_other(registry, names):
    assert list(registry) == list(names)


def test_pretraining_methods_and_finder_settings_name_what_exists():
    assert list(PRETRAINING_METHODS) == list(catalog.PRETRAINING_TASKS)
    assert {task for task, _ in PRETRAINING_METHODS.values()} <= set(TASKS)
    assert set(catalog.FINDER_SETTINGS) <= set(catalog.FINDERS)


def test_a_name_outside_the_catalog_cannot_be_registered():
    with pytest.raises(ValueError, match="task 'nope' is not in ticketlab.catalog"):
        TASKS.register("nope")(object())


def test_the_parser_loads_without_torch_or_transformers():
    code = (
        "import sys; from ticketlab.cli.parser import build_parser; build_parser(); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize(
    "verb", [[], ["find"], ["export"], ["experiment"]], ids=["top", "find", "export", "experiment"]
)
def test_help_answers_from_a_fresh_process_at_once(verb):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ticketlab", *verb, "--help"], capture_output=True, text=True)
    took = time.perf_counter() - started
    assert done.returncode == 0 and "usage: ticketlab" in done.stdout
    assert took < HELP_BOUND_S, f"--help took {took:.2f} s"
