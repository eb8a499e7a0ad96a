"""Pre-training a ResNet from scratch at small scale, supervised or self-supervised (SimCLR, MoCo v2), on Fashion-MNIST.

It runs the pre-training task through the one training loop and saves the backbone as a Hugging Face folder
(config.json, model.safetensors in torchvision's layout, pretrain.json with what was measured), which every ticketlab
verb takes as `--model`. The folder is named by a hash of the settings: re-running skips a finished pre-training and
resumes an interrupted one from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from ..atomic import atomic_path, remove, write_json
from ..config import TrainConfig, resolve_precision, settings_hash
from ..errors import TicketlabError
from ..models.vision import LAYOUTS, ResNetConfig
from ..store import finished, hold, seal
from ..tasks import TASKS
from ..train import check_processes, eval_batch_size, on_main_process, predict, train
from .records import METHODS, RECORD


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
    config = pretraining_config(method, architecture, options)
    if checkpoint_every < 1:
        raise TicketlabError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    task_name, model_class = METHODS[method]
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
    with hold(Path(out) / f".{folder.name}.lock", folder):
        if on_main_process(lambda: _finished(folder, checkpoint)):
            return folder
        torch.manual_seed(config.seed)
        in_channels = features["train"][0]["pixel_values"].shape[0]
        model = model_class(
            ResNetConfig.for_architecture(architecture, in_channels=in_channels, **task.model_options(data))
        )
        result = train(
            model,
            features["train"],
            task.collator(None, train=True),
            config,
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
        score = task.score(examples["dev"], features["dev"], dev)
        record = {
            **settings,
            "task": task.name,
            "steps": result.steps,
            "train_loss": result.train_loss,
            "train_time_s": result.time_s,
            "dev": score,
            "cost": result.cost(time.perf_counter() - evaluated),
        }

        def save() -> None:
            with atomic_path(folder) as tmp:
                model.resnet.save_pretrained(tmp)
                write_json(tmp / RECORD, record)
                seal(tmp, {"method": method})
            remove(checkpoint)

        on_main_process(save)
    return folder


def _finished(folder: Path, checkpoint: Path) -> bool:
    """Whether `folder` holds an intact finished pre-training. Leftovers of a killed process go (temporaries of a
    save, a checkpoint left after the model's save); a damaged folder is reported and removed, to be made again."""
    for leftover in [*folder.parent.glob(f".{folder.name}.tmp*"), *folder.parent.glob(f".{checkpoint.name}.tmp*")]:
        remove(leftover)
    return finished(folder, checkpoint, "pre-training it again")


def pretraining_config(method: str, architecture: str, options: Mapping[str, Any]) -> TrainConfig:
    """The training settings of a pre-training: TrainConfig fields `options` over its task's recipe; one-line errors
    for an unknown method, architecture or option, or a batch a contrastive method cannot learn from."""
    if method not in METHODS:
        raise TicketlabError(f"unknown pre-training method {method!r}; known: {', '.join(METHODS)}")
    if architecture not in LAYOUTS:
        raise TicketlabError(f"unknown architecture {architecture!r}; known: {', '.join(LAYOUTS)}")
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TicketlabError(f"unknown option {unknown[0]!r}")
    task = TASKS.get(METHODS[method][0])
    options = {**options, "precision": resolve_precision(options.get("precision"))}
    config = dataclasses.replace(task.small_recipe, **{k: v for k, v in options.items() if v is not None})
    task.check_batch(config)
    check_processes(config)
    return config
