"""The image tasks: the kNN monitor and the fixed splits by hand, the classification tasks' data, and the contrastive
pre-training tasks' training forward (views from the step's generator alone) and evaluation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import TINY_RESNET

from ticketlab.errors import TicketlabError
from ticketlab.models import ResNetConfig, ResNetForContrastiveLearning, ResNetModel
from ticketlab.pretraining import augment_view
from ticketlab.tasks import TASKS
from ticketlab.tasks.image_files import ImageSet, sklearn_digits
from ticketlab.tasks.images import KNN_NEIGHBOURS, held_out, knn_accuracy, resized, with_channels
from ticketlab.train.batches import Draws

pytestmark = pytest.mark.usefixtures("one_thread")


# --- knn_accuracy -----------------------------------------------------------------------------------------------------


def at_angles(degrees: list[float], norms: list[float]) -> np.ndarray:
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1) * np.array(norms)[:, None]


def test_knn_accuracy_of_two_separated_clusters_is_one():
    rng = np.random.default_rng(0)
    a = rng.normal([10, 0, 0], 0.1, (25, 3))
    b = rng.normal([0, 0, 10], 0.1, (25, 3))
    features = np.concatenate([a, b]).astype(np.float32)
    labels = np.array([0] * 25 + [1] * 25)
    assert knn_accuracy(features, labels, KNN_NEIGHBOURS) == 1.0
    assert knn_accuracy(features, 1 - labels, 3) == 1.0


def test_knn_accuracy_hand_checked_by_angle():
    """Six 2-D rows at 0, 7, 19, 80, 95, 115 degrees (cosine: only the angle counts, so the norms vary), labels
    0 0 1 1 1 0, three neighbours. The nearest others by angle and their vote:
    0°: 7°, 19°, 80° -> 0 1 1 -> 1 (wrong)      80°: 95°, 115°, 19° -> 1 0 1 -> 1 (right)
    7°: 0°, 19°, 80° -> 0 1 1 -> 1 (wrong)      95°: 80°, 115°, 19° -> 1 0 1 -> 1 (right)
    19°: 7°, 0°, 80° -> 0 0 1 -> 0 (wrong)     115°: 95°, 80°, 19° -> 1 1 1 -> 1 (wrong)
    (Euclidean neighbours would score 3/6 on these rows.)
    """
    features = at_angles([0, 7, 19, 80, 95, 115], [1.0, 5.0, 0.2, 3.0, 0.5, 9.0])
    labels = np.array([0, 0, 1, 1, 1, 0])
    assert knn_accuracy(features, labels, 3) == pytest.approx(2 / 6)
    # the order of the rows does not matter
    assert knn_accuracy(features[[3, 4, 5, 0, 1, 2]], labels[[3, 4, 5, 0, 1, 2]], 3) == pytest.approx(2 / 6)


def test_knn_accuracy_needs_more_rows_than_neighbours():
    features, labels = np.eye(20, dtype=np.float32), np.arange(20) % 2
    with pytest.raises(TicketlabError, match="20-nearest-neighbour score needs more than 20 images, got 20"):
        knn_accuracy(features, labels, 20)
    assert 0.0 <= knn_accuracy(np.eye(21, dtype=np.float32), np.arange(21) % 2, 20) <= 1.0


# --- held_out and resized ---------------------------------------------------------------------------------------------


def numbered(n: int) -> ImageSet:
    """Images whose label is their index, so a split shows which rows it took."""
    images = (np.arange(n, dtype=np.float32) / n).reshape(n, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float32)
    return ImageSet(images, np.arange(n, dtype=np.int64), tuple(str(i) for i in range(n)))


def test_held_out_is_a_fixed_disjoint_80_20_split_whatever_the_seed():
    torch.manual_seed(0)
    np.random.seed(0)
    first = held_out(numbered(103), "numbered")
    torch.manual_seed(123)
    np.random.seed(123)
    second = held_out(numbered(103), "numbered")
    train, dev = first["train"].labels, first["dev"].labels
    assert len(dev) == round(0.2 * 103) == 21 and len(train) == 103 - 21
    assert not set(train) & set(dev) and sorted([*train, *dev]) == list(range(103))
    assert np.array_equal(train, second["train"].labels) and np.array_equal(dev, second["dev"].labels)
    assert np.array_equal(
        first["dev"].images[:, 0, 0, 0], dev.astype(np.float32) / 103
    )  # images travel with their labels
    assert list(dev) != sorted(dev)  # shuffled, not the first or last rows


def test_resized_gives_28_by_28_in_unit_range():
    digits = sklearn_digits()
    big = resized(digits, 28)
    assert big.images.shape == (len(digits), 1, 28, 28) and big.images.dtype == np.float32
    assert big.images.min() >= 0.0 and big.images.max() <= 1.0 and big.images.max() > 0.9
    assert np.array_equal(big.labels, digits.labels) and big.classes == digits.classes
    flat = ImageSet(np.full((2, 1, 8, 8), 0.25, np.float32), np.array([0, 1]), ("a", "b"))
    np.testing.assert_allclose(resized(flat, 28).images, 0.25, atol=1e-7)


# --- classification tasks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, total", [("mnist", 5000), ("digits", 1797)])
def test_mnist_and_digits_splits_and_batches(name, total):
    task = TASKS.get(name)
    splits = task.splits(None)
    n_dev = round(0.2 * total)
    assert (len(splits["train"]), len(splits["dev"])) == (total - n_dev, n_dev)
    assert name != "mnist" or (len(splits["train"]), len(splits["dev"])) == (4000, 1000)
    assert name != "digits" or (len(splits["train"]), len(splits["dev"])) == (1438, 359)
    image, label = splits["dev"][0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert {label for _, label in splits["train"]} == set(range(10))
    assert task.model_options() == {"num_labels": 10} and task.metric == "accuracy"

    features = task.encode(None, splits["train"][:5], 128)
    assert features[0].keys() == {"pixel_values", "labels"}
    batch = task.collator(None, train=True)(features)
    assert batch["pixel_values"].shape == (5, 1, 28, 28) and batch["labels"].dtype == torch.int64
    assert batch["labels"].tolist() == [label for _, label in splits["train"][:5]]
    assert torch.equal(batch["pixel_values"][0], splits["train"][0][0])


def test_user_images_task_reads_a_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "three.npz"
    np.savez(path, images=rng.integers(0, 256, (30, 16, 16), dtype=np.uint8), labels=np.repeat([3, 7, 9], 10))
    task = TASKS.get("images")
    assert task.model_options(str(path)) == {"num_labels": 3}
    splits = task.splits(str(path))
    assert (len(splits["train"]), len(splits["dev"])) == (24, 6)
    assert splits["train"][0][0].shape == (1, 16, 16)
    assert {label for split in splits.values() for _, label in split} == {0, 1, 2}
    with pytest.raises(TicketlabError, match="task images needs --data") as error:
        task.splits(None)
    assert "\n" not in str(error.value)
    with pytest.raises(TicketlabError, match="--data"):
        task.model_options(None)


# --- channels and processors ------------------------------------------------------------------------------------------


def test_images_get_the_channels_of_the_model():
    gray = torch.rand(1, 4, 5)
    rgb = torch.stack([torch.full((4, 5), 1.0), torch.full((4, 5), 0.5), torch.zeros(4, 5)])
    assert with_channels(gray, None) is gray and with_channels(rgb, 3) is rgb
    assert with_channels(gray, 3).shape == (3, 4, 5) and all(torch.equal(c, gray[0]) for c in with_channels(gray, 3))
    torch.testing.assert_close(with_channels(rgb, 1), torch.full((1, 4, 5), 0.299 + 0.587 * 0.5))  # ITU-R 601 luma
    with pytest.raises(TicketlabError, match="2 channels do not fit a model that takes 3"):
        with_channels(torch.rand(2, 4, 5), 3)


def test_processors_refuse_a_model_of_the_other_kind(tmp_path, tiny_model_dir):
    resnet = tmp_path / "resnet"
    ResNetModel(ResNetConfig(**{**TINY_RESNET, "in_channels": 3})).save_pretrained(resnet)
    assert TASKS.get("digits").processor(resnet) == 3
    features = TASKS.get("digits").encode(3, TASKS.get("digits").splits(None)["dev"][:2], 128)
    assert features[0]["pixel_values"].shape == (3, 28, 28)
    with pytest.raises(TicketlabError, match="task digits needs a vision model"):
        TASKS.get("digits").processor(tiny_model_dir)
    with pytest.raises(TicketlabError, match="task rotten-tomatoes is a text task"):
        TASKS.get("rotten-tomatoes").processor(resnet)


# --- contrastive pre-training tasks -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contrastive_models():
    models = {}
    for name in ("fashion-mnist-simclr", "fashion-mnist-moco"):
        torch.manual_seed(0)
        options = {**TASKS.get(name).model_options(), "queue_size": 32}
        models[name] = ResNetForContrastiveLearning(ResNetConfig(**{**TINY_RESNET, **options}))
    return models


def batch_of(task, fashion_dir, n: int = 8):
    examples = task.splits(str(fashion_dir))["train"][:n]
    return task.collator(None, train=True)(task.encode(None, examples, 128))


def test_contrastive_tasks_read_fashion_mnist_and_configure_their_models(fashion_dir):
    simclr, moco = TASKS.get("fashion-mnist-simclr"), TASKS.get("fashion-mnist-moco")
    assert simclr.model_options() == {"contrastive": "simclr", "loss_temperature": 0.5}
    assert moco.model_options() == {
        "contrastive": "moco",
        "loss_temperature": 0.2,
        "queue_size": 4096,
        "momentum": 0.99,
    }
    for task in (simclr, moco):
        splits = task.splits(str(fashion_dir))
        assert (len(splits["train"]), len(splits["dev"])) == (64, 32)  # dev: Fashion-MNIST's test images
        assert task.metric == "knn_accuracy" and task.auto_class is ResNetForContrastiveLearning


@pytest.mark.parametrize("name", ["fashion-mnist-simclr", "fashion-mnist-moco"])
def test_training_forward_draws_its_views_from_the_steps_generator_alone(name, contrastive_models, fashion_dir):
    task, model = TASKS.get(name), contrastive_models[name]
    batch = batch_of(task, fashion_dir)

    def loss_with(seed: int) -> torch.Tensor:
        trained = copy.deepcopy(
            model
        ).train()  # MoCo's forward moves its queue and momentum encoder: a fresh copy each time
        return task.forward(trained, batch, Draws(torch.Generator().manual_seed(seed))).loss.detach()

    before = torch.get_rng_state()
    first, again, other = loss_with(0), loss_with(0), loss_with(1)
    assert torch.equal(torch.get_rng_state(), before)  # nothing drawn from the global (dropout) stream
    assert torch.isfinite(first) and torch.equal(first, again) and not torch.equal(first, other)

    # by hand: the generator draws both views
    generator = torch.Generator().manual_seed(0)
    images = batch["pixel_values"]
    view, positive = (augment_view(images, generator, (28, 28), task.views) for _ in range(2))
    assert not torch.equal(view, positive) and not torch.equal(view, images)
    share = Draws(torch.Generator().manual_seed(0), (1, 3, len(images)))  # a process's rows 1-2: viewed as in the batch
    assert torch.equal(share.apply(lambda rows, g: augment_view(rows, g, (28, 28), task.views), images[1:3]), view[1:3])
    expected = copy.deepcopy(model).train()(pixel_values=view, positive_values=positive).loss
    assert torch.equal(first, expected.detach())


@pytest.mark.parametrize("name", ["fashion-mnist-simclr", "fashion-mnist-moco"])
def test_evaluation_forward_gives_the_features_and_score_the_knn_accuracy(name, contrastive_models, fashion_dir):
    task, model = TASKS.get(name), copy.deepcopy(contrastive_models[name]).eval()
    batch = batch_of(task, fashion_dir)
    before = torch.get_rng_state()
    with torch.no_grad():
        output = task.forward(model, batch)
        expected = model.resnet(batch["pixel_values"]).pooler_output
    assert output.loss is None and torch.equal(output.features, expected)
    assert torch.equal(torch.get_rng_state(), before)  # no views in evaluation
    kept = task.outputs(output, batch)
    assert kept.keys() == {"features", "labels"} and kept["features"].shape == (8, 8)

    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(40, 8)).astype(np.float32), rng.integers(0, 3, 40)
    assert task.score([], [], {"features": features, "labels": labels}) == {
        "knn_accuracy": knn_accuracy(features, labels, 20)
    }
