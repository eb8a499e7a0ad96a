"""`ticketlab pretrain`: a ResNet pre-trained from scratch at small scale, supervised or self-supervised (SimCLR, MoCo
v2), on Fashion-MNIST.

It runs the pre-training task through the one training loop and saves the backbone as a Hugging Face folder
(config.json, model.safetensors in torchvision's layout, pretrain.json with what was measured), which every ticketlab
verb takes as `--model`. The folder is a whole unit of the store (ticketlab.store.units), named by a hash of the
settings: re-running skips a finished pre-training and resumes an interrupted one from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .catalog import PRETRAINING_TASKS
from .config import TrainConfig, resolve_precision, settings_hash
from .errors import TicketlabError
from .models.vision import LAYOUTS, ResNetConfig, ResNetForContrastiveLearning, ResNetForImageClassification
from .store import Unit, hold, log_folder, make
from .tasks import TASKS
from .train.evaluate import eval_batch_size, predict
from .train.launch import check_processes, on_main_process
from .train.loop import train
from .train.tracking import Tracking, check_trackers

PRETRAINING_METHODS = {  # method -> (its pre-training task, the model that trains on it)
    method: (task, ResNetForImageClassification if method == "supervised" else ResNetForContrastiveLearning)
    for method, task in PRETRAINING_TASKS.items()
}
RECORD = "pretrain.json"


def pretrain(
    method: str = "supervised",
    *,
    architecture: str = "resnet-small",
    data: str | None = None,
    out: str | Path = "runs/pretrained",
    checkpoint_every: int = 100,
    log_with: Sequence[str] = (),
    **options: Any,
) -> Path:
    """Pre-train `architecture` from a random initialisation with `method` (supervised, simclr, moco); `options` are
    TrainConfig fields over the pre-training task's recipe; `log_with`: the trackers it logs to (in `out`'s logs/).
    Returns the model folder."""
    config = pretraining_config(method, architecture, options)
    if checkpoint_every < 1:
        raise TicketlabError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    log_with = check_trackers(log_with)
    task_name, model_class = PRETRAINING_METHODS[method]
    task = TASKS.get(task_name)
    if data is not None and not Path(data).exists():
        raise TicketlabError(f"data not found: {data}")
    settings = {
        "method": method,
        "architecture": architecture,
        "data": str(Path(data).resolve()) if data else None,
        "train": config.settings(),
    }
    digest = settings_hash(settings)
    folder = Path(out) / f"{method}_{architecture}_{digest}"
    checkpoint = Path(out) / f".{folder.name}.checkpoint"
    examples = task.splits(data)
    examples["train"] = examples["train"][: config.train_examples]
    features = {name: task.encode(None, split, config.max_length) for name, split in examples.items()}
    unit = Unit(folder, {"method": method}, checkpoint, RECORD, whole=True, again="pre-training it again")
    with hold(Path(out) / f".{folder.name}.lock", folder):
        if on_main_process(unit.intact):
            return folder
        torch.manual_seed(config.seed)  # the random initialisation it starts from (a checkpoint holds where it got to)
        in_channels = features["train"][0]["pixel_values"].shape[0]
        model = model_class(
            ResNetConfig.for_architecture(architecture, in_channels=in_channels, **task.model_options(data))
        )

        def trained() -> dict[str, Any]:
            with Tracking(log_with, log_folder(Path(out), folder), {"unit": folder.name, **settings}) as tracking:
                result = train(
                    model,
                    features["train"],
                    task.collator(None, train=True),
                    config,
                    hooks=[tracking],
                    checkpoint=checkpoint,
                    checkpoint_every=checkpoint_every,
                    description=f"pre-training · {method}",
                    forward=task.forward,
                )
                evaluated = time.perf_counter()
                dev = predict(
                    model,
                    features["dev"],
                    task.collator(None, train=False),
                    eval_batch_size(config.batch_size),
                    task.outputs,
                    task.forward,
                    config.precision,
                )
                scores = task.score(examples["dev"], features["dev"], dev)
                eval_time_s = time.perf_counter() - evaluated
                tracking.log_evaluation({"dev": scores}, result.steps)
            return {
                **settings,
                "task": task.name,
                "steps": result.steps,
                "train_loss": result.train_loss,
                "train_time_s": result.time_s,
                "dev": scores,
                "cost": result.cost(eval_time_s),
            }

        make(unit, train=trained, keep=lambda tmp: model.resnet.save_pretrained(tmp))
    return folder


def pretraining_config(method: str, architecture: str, options: Mapping[str, Any]) -> TrainConfig:
    """The training settings of a pre-training: TrainConfig fields `options` over its task's recipe; one-line errors
    for an unknown method, architecture or option, or a batch a contrastive method cannot learn from."""
    if method not in PRETRAINING_METHODS:
        raise TicketlabError(f"unknown pre-training method {method!r}; known: {', '.join(PRETRAINING_METHODS)}")
    if architecture not in LAYOUTS:
        raise TicketlabError(f"unknown architecture {architecture!r}; known: {', '.join(LAYOUTS)}")
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TicketlabError(f"unknown option {unknown[0]!r}")
    task = TASKS.get(PRETRAINING_METHODS[method][0])
    options = {**options, "precision": resolve_precision(options.get("precision"))}
    config = dataclasses.replace(task.small_recipe, **{k: v for k, v in options.items() if v is not None})
    task.check_batch(config)
    check_processes(config)
    return config


def pretrain_record(folder: str | Path) -> dict[str, Any]:
    """What `pretrain` measured for the model in `folder`."""
    path = Path(folder) / RECORD
    if not path.is_file():
        raise TicketlabError(f"{folder} holds no finished pre-training ({RECORD} missing)")
    return json.loads(path.read_text())
