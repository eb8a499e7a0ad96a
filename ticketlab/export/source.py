"""What an export starts from: the model a ticket makes, with its mask, provenance and, for trained weights, a way
to score it on the task's dev split.

- a run's round that kept its fine-tuned weights (the last IMP round, the dense round 0): the trained task model;
- any other ticket (a mask file, a control's or an earlier round's mask): the ticket on the base model's pre-trained
  backbone, to fine-tune before use (as `ticketlab apply` writes it);
- an EarlyBERT model folder (branches/earlybert-*/round_00/model): the trained compacted model, no mask, with the
  provenance of its unit and, as the reference its speed is measured against, the full-size model of its run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_model as load_weights
from torch import nn
from transformers import AutoModel

from ..api import apply_ticket, locate_ticket, read_ticket
from ..config import RunConfig
from ..earlybert.hf import is_compact_folder, load_compact
from ..errors import TicketlabError
from ..masks import Mask, load_mask
from ..models import is_resnet, load_pretrained, resolve_model
from ..store import RunStore
from ..tasks.data import TaskData

Evaluate = Callable[[nn.Module], dict[str, float]]


@dataclass
class Source:
    """A model to export, fp32 on the CPU, its pruned weights zeroed."""

    model: nn.Module
    mask: Mask  # named relative to the backbone; empty for a compacted model
    metadata: dict[str, str]  # the ticket's provenance
    weights: str  # where the weights come from, in words
    processor: Path | None  # the folder whose tokenizer goes beside the model (None: a ResNet)
    evaluate: Evaluate | None = field(default=None, repr=False)  # dev metrics of a model (trained weights only)
    reference: nn.Module | None = field(default=None, repr=False)  # a structured ticket's full-size model; None: itself


def load_source(ticket: str | Path, model: str | None = None, trained: bool = True) -> Source:
    """The model `ticket` makes (see the module's docstring); `model` names the base model of a bare mask file.
    `trained=False`: always the ticket on the pre-trained weights (the lottery's view, `ticketlab apply`)."""
    folder = Path(ticket)
    if trained and folder.is_dir() and is_compact_folder(folder):
        return _compact_source(folder)
    located = locate_ticket(ticket)
    if trained and located is not None:
        store, round = located
        if store.weights_path(round).is_file():
            return _trained_source(store, round)
    mask, metadata = read_ticket(ticket)
    base = model or metadata.get("base_model")
    if base is None:
        raise TicketlabError(f"{ticket} does not name its base model; pass --model")
    path = resolve_model(base)
    pruned = apply_ticket(load_pretrained(path, AutoModel, seed=int(metadata.get("seed", 0))), mask)
    origin = "the pre-trained weights with the ticket applied (fine-tune before use)"
    return Source(pruned.eval(), mask, metadata, origin, None if is_resnet(path) else path)


def _trained_source(store: RunStore, round: int) -> Source:
    store.verified(round)  # the mask and the weights are intact
    mask, metadata = load_mask(store.mask_path(round))
    config, path = store.config(), resolve_model(store.config().model)
    data = TaskData(config)
    model = _task_model(config, data)
    load_weights(model, str(store.weights_path(round)))
    origin = f"round {round}'s fine-tuned weights ({store.path.name})"
    pruned = apply_ticket(model, mask).eval()
    return Source(pruned, mask, metadata, origin, None if is_resnet(path) else path, _scorer(data))


def _compact_source(folder: Path) -> Source:
    """A compacted EarlyBERT model; inside a run (branches/<name>/round_00/model), its unit verified, its provenance
    read from the unit's structure file and the run's model at full size (pre-trained weights: the time of a forward
    does not depend on them) as the reference."""
    model = load_compact(folder).eval()
    origin = f"the compacted EarlyBERT model {folder}"
    unit = folder.parent
    run = unit.parent.parent.parent
    if unit.parent.parent.name != "branches" or not (run / "config.json").is_file():
        return Source(model, {}, {"model": str(folder)}, origin, folder)
    store = RunStore.open(run)
    rounds = store.branch(unit.parent.name)
    rounds.verified(0)
    metadata = load_mask(rounds.structure_path(0))[1]
    config = store.config()
    data = TaskData(config)
    return Source(model, {}, metadata, origin, folder, _scorer(data), _task_model(config, data).eval())


def _task_model(config: RunConfig, data: TaskData) -> nn.Module:
    """The run's model with its task head, from the pre-trained weights and the run's seed."""
    path = resolve_model(config.model)
    return load_pretrained(path, data.task.auto_class, config.train.seed, **data.task.model_options(config.data))


def _scorer(data: TaskData) -> Evaluate:
    """Metrics of a model on the task's first evaluation split (dev), named `<split>_<metric>`."""
    split = data.task.eval_splits[0]

    def evaluate(model: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            # an export runs in fp32 (its sparse kernels take fp32 inputs), whatever the run trained in
            return {f"{split}_{name}": value for name, value in data.evaluate(split, model, "fp32").items()}

    return evaluate
