"""Pre-training a ResNet from scratch at small scale, supervised or self-supervised (SimCLR, MoCo v2), on Fashion-MNIST.

It runs the pre-training task through the one training loop and saves the backbone as a Hugging Face folder
(config.json, model.safetensors in torchvision's layout, pretrain.json with what was measured), which every ticketlab
verb takes as `--model`. The folder is named by a hash of the settings: re-running skips a finished pre-training and
resumes an interrupted one from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path, remove, write_json
from .config import TrainConfig
from .errors import TicketlabError
from .lottery import check_train_config
from .models.vision import LAYOUTS, ResNetConfig, ResNetForContrastiveLearning, ResNetForImageClassification
from .tasks import TASKS
from .train import predict, train

METHODS = {  # method -> (its pre-training task, the model that trains on it)
    "supervised": ("fashion-mnist", ResNetForImageClassification),
    "simclr": ("fashion-mnist-simclr", ResNetForContrastiveLearning),
    "moco": ("fashion-mnist-moco", ResNetForContrastiveLearning),
}
RECORD = "pretrain.json"


def pretrain(
    method: str = "supervised",
    *,
    architecture: str = "resnet-small",
    data: str | None = None,
    out: str | Path = "runs/pretrained",
    checkpoint_every: int = 100,
    **options: Any,
) -> Path:
    """Pre-train `architecture` from a random initialisation with `method` (supervised, simclr, moco); `options` are
    TrainConfig fields over the pre-training task's recipe. Returns the model folder."""
    if method not in METHODS:
        raise TicketlabError(f"unknown pre-training method {method!r}; known: {', '.join(METHODS)}")
    if architecture not in LAYOUTS:
        raise TicketlabError(f"unknown architecture {architecture!r}; known: {', '.join(LAYOUTS)}")
    task_name, model_class = METHODS[method]
    task = TASKS.get(task_name)
    config = _train_config(task.small_recipe, options)
    if data is not None and not Path(data).exists():
        raise TicketlabError(f"data not found: {data}")
    settings = {"method": method, "architecture": architecture, "data": str(Path(data).resolve()) if data else None,
                "train": dataclasses.asdict(config)}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    folder = Path(out) / f"{method}_{architecture}_{digest}"
    if (folder / RECORD).is_file():
        return folder

    examples = task.splits(data)
    examples["train"] = examples["train"][: config.train_examples]
    features = {name: task.encode(None, split, config.max_length) for name, split in examples.items()}
    torch.manual_seed(config.seed)
    in_channels = features["train"][0]["pixel_values"].shape[0]
    model = model_class(ResNetConfig.for_architecture(architecture, in_channels=in_channels, **task.model_options(data)))
    checkpoint = Path(out) / f".{folder.name}.checkpoint"
    started = time.perf_counter()
    result = train(model, features["train"], task.collator(None, train=True), config, checkpoint=checkpoint,
                   checkpoint_every=checkpoint_every, description=f"pre-training · {method}", forward=task.forward)
    train_time = time.perf_counter() - started
    dev = predict(model, features["dev"], task.collator(None, train=False), config.batch_size, task.outputs, task.forward)
    record = {**settings, "task": task.name, "steps": result.steps, "train_loss": result.train_loss,
              "train_time_s": train_time, "dev": task.score(examples["dev"], features["dev"], dev)}
    with atomic_path(folder) as tmp:
        model.resnet.save_pretrained(tmp)
        write_json(tmp / RECORD, record)
    remove(checkpoint)
    return folder


def pretrain_record(folder: str | Path) -> dict[str, Any]:
    """What `pretrain` measured for the model in `folder`."""
    path = Path(folder) / RECORD
    if not path.is_file():
        raise TicketlabError(f"{folder} holds no finished pre-training ({RECORD} missing)")
    return json.loads(path.read_text())


def _train_config(recipe: TrainConfig, options: dict[str, Any]) -> TrainConfig:
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TicketlabError(f"unknown option {unknown[0]!r}")
    config = dataclasses.replace(recipe, **{k: v for k, v in options.items() if v is not None})
    check_train_config(config)
    return config
