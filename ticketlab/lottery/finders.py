"""How a lottery run draws the mask of each pruned round: the finders `find --method` names.

Every finder's run has the same rounds: round 0 trains the dense model (every comparison's baseline), and round r
trains the ticket at the schedule's r-th level from θ0 (so verdicts, controls, transfer and the report apply
unchanged). What differs is where round r's mask comes from:

- imp: magnitude pruning of round r-1's trained weights (the paper's IMP).
- early-bird: IMP whose draw of the next mask is watched while a round trains; the mask is taken as soon as it has
  settled (ticketlab.lottery.early_bird), with the task head of that step, and with `final_only` the round stops
  there.
- one-shot: magnitude pruning of the dense round's trained weights.
- wanda: |w| x the norm of its input feature over calibration examples, per output row (Sun et al. 2023), on the
  dense round's trained model.
- gmp: the masks one gradual magnitude pruning run crosses (ticketlab.lottery.gmp), trained once before the rounds,
  each with the task head of the step it was taken at.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator
from weakref import WeakKeyDictionary

import torch
from accelerate.utils import send_to_device
from safetensors.torch import load_file

from .. import catalog
from ..arms import EARLY_BIRD, GMP, IMP, ONE_SHOT, WANDA
from ..masks import Mask, load_mask
from ..pruning import PRUNING_METHODS
from ..pruning.wanda import input_norms, row_prune, wanda_scores
from ..registry import Registry
from ..train.launch import accelerator
from .context import RunContext
from .early_bird import Head, SettleWatch, draw_head_path, draw_path
from .gmp import gmp_head_path, gmp_mask_path, run_gmp_search

log = logging.getLogger(__name__)
_dense_norms: WeakKeyDictionary[RunContext, dict[str, torch.Tensor]] = WeakKeyDictionary()  # Wanda's, once a run
DrawMask = Callable[[RunContext, int, float, Mask], Mask]  # (run, round, level, previous round's mask) -> round's mask


@dataclass(frozen=True)
class Finder:
    """A way to draw round r's mask; the run's model holds the trained weights of round `source(r)` when `draw` is
    called, and round r starts from that round's trained head, or from `head(run, r)` where the mask was drawn at
    another moment (unless the run rewinds the head)."""

    draw: DrawMask
    source: Callable[[int], int]
    search: Callable[[RunContext], None] | None = None  # trains what every pruned round's mask needs, first (where
    # the store holds no complete and intact one)
    watch: Callable[[RunContext, int], SettleWatch | None] = lambda context, round: None  # watches round r train
    head: Callable[[RunContext, int], Head | None] = lambda context, round: None  # round r's head, drawn with its mask


FINDERS: Registry[Finder] = Registry("ticket finder", catalog.FINDERS)  # what each does: the catalog


def _previous(round: int) -> int:
    return round - 1


def _dense(round: int) -> int:
    return 0


def _imp(context: RunContext, round: int, level: float, previous: Mask) -> Mask:
    prune = PRUNING_METHODS.get(context.config.prune.method)
    return prune(context.weights, previous, level, context.rankings, context.granularity)


def _one_shot(context: RunContext, round: int, level: float, previous: Mask) -> Mask:
    return context.prune_by_magnitude(previous, level)


def _wanda(context: RunContext, round: int, level: float, previous: Mask) -> Mask:
    if context not in _dense_norms:  # the dense round's model: the same calibration every round
        _dense_norms[context] = input_norms(
            context.model, context.weights, _calibration(context), context.data.task.forward
        )
    return row_prune(wanda_scores(context.weights, _dense_norms[context]), previous, level, context.granularity)


def _calibration(context: RunContext) -> Iterator[dict[str, torch.Tensor]]:
    """The first `calibration_examples` training examples, in batches as evaluation sees them (all of them, said in
    one line, where the training split holds fewer)."""
    wanted, features = context.config.prune.calibration_examples, context.data.features["train"]
    if wanted > len(features):
        log.warning("wanda: calibrating on all %d training examples (--calibration-examples %d)", len(features), wanted)
    features = features[:wanted]
    size = context.config.train.batch_size
    for start in range(0, len(features), size):
        yield send_to_device(context.data.eval_collate(features[start : start + size]), accelerator().device)


def _gmp(context: RunContext, round: int, level: float, previous: Mask) -> Mask:
    return load_mask(gmp_mask_path(context.store, round))[0]


def _gmp_head(context: RunContext, round: int) -> Head:
    return load_file(str(gmp_head_path(context.store, round)))


def _early_bird(context: RunContext, round: int, level: float, previous: Mask) -> Mask:
    return load_mask(draw_path(context.store, round - 1))[0]


def _drawn_head(context: RunContext, round: int) -> Head:
    return load_file(str(draw_head_path(context.store, round - 1)))


def _settle_watch(context: RunContext, round: int) -> SettleWatch:
    settings = context.config.prune
    current = load_mask(context.store.mask_path(round))[0]
    level = context.levels[round + 1]
    stop = settings.final_only and round > 0  # the dense round is every comparison's baseline: always trained in full
    return SettleWatch(lambda: _imp(context, round + 1, level, current), context.head_values, settings, stop)


FINDERS.register(IMP)(Finder(_imp, _previous))
FINDERS.register(EARLY_BIRD)(Finder(_early_bird, _previous, watch=_settle_watch, head=_drawn_head))
FINDERS.register(ONE_SHOT)(Finder(_one_shot, _dense))
FINDERS.register(WANDA)(Finder(_wanda, _dense))
FINDERS.register(GMP)(Finder(_gmp, _dense, run_gmp_search, head=_gmp_head))
