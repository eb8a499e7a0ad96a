"""Self-supervised pre-training parts: the losses against hand computations, the queue, the momentum update, and the
augmentations' shapes, ranges, reproducibility and identities."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.pretraining import (
    MOCO_V2,
    ProjectionHead,
    Queue,
    augment_view,
    color_jitter,
    frozen_copy,
    gaussian_blur,
    info_nce,
    momentum_update,
    nt_xent,
    random_grayscale,
    random_horizontal_flip,
    random_resized_crop,
    simclr_views,
)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def nt_xent_by_loops(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """SimCLR's loss written out anchor by anchor."""
    views = [v / v.norm() for v in torch.cat([z1, z2])]
    n = z1.shape[0]
    total = 0.0
    for i, anchor in enumerate(views):
        positive = (i + n) % (2 * n)
        denominator = sum(math.exp(float(anchor @ other) / t) for j, other in enumerate(views) if j != i)
        total += -math.log(math.exp(float(anchor @ views[positive]) / t) / denominator)
    return total / (2 * n)


# nt_xent


@pytest.mark.parametrize("n,t", [(2, 0.5), (4, 0.2), (3, 1.0)])
def test_nt_xent_orthonormal_identical_views_closed_form(n: int, t: float):
    z = torch.eye(n, 8) * 3.0  # orthogonal; the scale is normalized away
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + (2 * n - 2)))
    assert nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_nt_xent_equals_loop_reference_on_random_inputs():
    g = seeded(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert nt_xent(z1, z2, 0.3).item() == pytest.approx(nt_xent_by_loops(z1, z2, 0.3), rel=1e-5)


def test_nt_xent_decreases_as_views_agree_and_gradient_flows():
    g = seeded(1)
    z1, noise = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    losses = [nt_xent(z1, z1 + scale * noise, 0.5).item() for scale in (2.0, 0.5, 0.0)]
    assert losses[0] > losses[1] > losses[2]
    z2 = torch.randn(6, 16, generator=g, requires_grad=True)
    nt_xent(z1, z2, 0.5).backward()
    assert z2.grad is not None and z2.grad.abs().sum() > 0


@pytest.mark.parametrize("z2,t", [(torch.randn(3, 4), 0.5), (torch.randn(4, 4), 0.0), (torch.randn(4, 4), -1.0)])
def test_nt_xent_refuses_bad_inputs(z2: torch.Tensor, t: float):
    with pytest.raises(TicketlabError):
        nt_xent(torch.randn(4, 4), z2, t)


def test_projection_head_shapes():
    assert ProjectionHead(8, 16, 4)(torch.randn(5, 8)).shape == (5, 4)
    head = ProjectionHead(8, 16, 4, batch_norm=True)
    assert isinstance(head[1], nn.BatchNorm1d) and head(torch.randn(5, 8)).shape == (5, 4)


# info_nce


def test_info_nce_hand_computed_two_by_two():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    k = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    t = 0.5
    r = 1 / math.sqrt(2)
    # query 0 = (1, 0): positive 1, negatives 0 and -1; query 1 = (0, 1): positive r, negatives 1 and 0
    loss0 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(0) + math.exp(-1 / t)))
    loss1 = -math.log(math.exp(r / t) / (math.exp(r / t) + math.exp(1 / t) + math.exp(0)))
    assert info_nce(q, k, queue, t).item() == pytest.approx((loss0 + loss1) / 2, rel=1e-6)


def test_info_nce_positive_first_and_accepts_a_queue():
    q = F.normalize(torch.randn(4, 8, generator=seeded(2)), dim=1)
    queue = Queue(16, 8, generator=seeded(3))
    aligned = info_nce(q, q.clone(), queue, 0.07).item()
    against = info_nce(q, -q, queue, 0.07).item()
    assert aligned < against
    assert info_nce(q, q, queue, 0.07).item() == pytest.approx(info_nce(q, q, queue.keys, 0.07).item())
    with pytest.raises(TicketlabError):
        info_nce(q, q, torch.randn(16, 5), 0.07)
    with pytest.raises(TicketlabError):
        info_nce(q, q, queue, 0.0)


# Queue


def test_queue_enqueues_fifo_with_wraparound_and_normalizes():
    queue = Queue(5, 3, generator=seeded(4))
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(5))
    first = torch.randn(3, 3, generator=seeded(5)) * 4
    queue.enqueue(first)
    assert torch.allclose(queue.keys[:3], F.normalize(first, dim=1)) and queue.pointer.item() == 3
    before = queue.keys[2].clone()
    second = torch.randn(3, 3, generator=seeded(6))
    queue.enqueue(second)  # rows 3, 4, then 0
    assert torch.allclose(queue.keys[[3, 4, 0]], F.normalize(second, dim=1))
    assert torch.equal(queue.keys[2], before) and queue.pointer.item() == 1
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(5))


def test_queue_state_dict_round_trip_and_refusals():
    queue = Queue(4, 2, generator=seeded(7))
    queue.enqueue(torch.randn(3, 2, generator=seeded(8)))
    restored = Queue(4, 2)
    restored.load_state_dict(queue.state_dict())
    assert set(queue.state_dict()) == {"keys", "pointer"}
    assert torch.equal(restored.keys, queue.keys) and restored.pointer.item() == 3
    with pytest.raises(TicketlabError, match="does not fit"):
        queue.enqueue(torch.randn(5, 2))
    with pytest.raises(TicketlabError):
        queue.enqueue(torch.randn(2, 3))


# momentum_update


def pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(9)
    online, key = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    online[1].running_mean.fill_(0.7)
    return online, key


@pytest.mark.parametrize("m", [0.0, 1.0, 0.9])
def test_momentum_update_blends_parameters_and_copies_buffers(m: float):
    online, key = pair()
    before = {name: value.clone() for name, value in key.named_parameters()}
    momentum_update(online, key, m)
    after = dict(key.named_parameters())
    for name, value in online.named_parameters():
        if m == 0.9:
            assert torch.allclose(after[name], 0.9 * before[name] + 0.1 * value)
        else:
            assert torch.equal(after[name], value if m == 0.0 else before[name])
    assert torch.equal(key[1].running_mean, online[1].running_mean)


def test_a_frozen_copy_holds_the_state_as_buffers_and_follows_momentum_updates():
    online, _ = pair()
    frozen = frozen_copy(online)
    assert not list(frozen.parameters())
    assert {name: value for name, value in frozen.state_dict().items()}.keys() == online.state_dict().keys()
    assert all(torch.equal(frozen.state_dict()[name], value) for name, value in online.state_dict().items())
    before = frozen[0].weight.clone()
    with torch.no_grad():
        online[0].weight.add_(1.0)
    momentum_update(online, frozen, 0.9)
    assert torch.allclose(frozen[0].weight, 0.9 * before + 0.1 * online[0].weight)
    assert torch.equal(frozen(torch.ones(2, 3)), frozen(torch.ones(2, 3)))  # it still computes, from its buffers


def test_momentum_update_refusals():
    online, key = pair()
    for m in (-0.1, 1.5):
        with pytest.raises(TicketlabError):
            momentum_update(online, key, m)
    with pytest.raises(TicketlabError):
        momentum_update(online, nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5)), 0.9)


# augmentations


BATCHES = {"gray28": (4, 1, 28, 28), "rgb32": (4, 3, 32, 32)}


@pytest.fixture(params=list(BATCHES))
def images(request) -> torch.Tensor:
    return torch.rand(BATCHES[request.param], generator=seeded(10))


def test_views_keep_shape_range_and_are_reproducible(images: torch.Tensor):
    size = images.shape[-1]
    one, two = simclr_views(images, seeded(11), size)
    assert one.shape == two.shape == images.shape
    assert one.min() >= 0 and one.max() <= 1 and two.min() >= 0 and two.max() <= 1
    again = simclr_views(images, seeded(11), size)
    assert torch.equal(one, again[0]) and torch.equal(two, again[1])
    assert not torch.equal(one, two)
    assert not torch.equal(one, simclr_views(images, seeded(12), size)[0])
    assert augment_view(images, seeded(13), (16, 20), MOCO_V2).shape == (*images.shape[:2], 16, 20)


def test_flip_with_p_one_is_torch_flip_and_p_zero_is_identity(images: torch.Tensor):
    assert torch.equal(random_horizontal_flip(images, seeded(0), p=1.0), torch.flip(images, dims=[-1]))
    assert torch.equal(random_horizontal_flip(images, seeded(0), p=0.0), images)


def test_full_crop_is_the_image(images: torch.Tensor):
    crop = random_resized_crop(images, seeded(14), images.shape[-1], scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(crop, images, atol=1e-5)


def test_crops_differ_per_image():
    images = torch.rand(1, 3, 32, 32, generator=seeded(15)).expand(6, -1, -1, -1)
    crops = random_resized_crop(images, seeded(16), 16)
    assert crops.shape == (6, 3, 16, 16)
    assert len({crops[i].sum().item() for i in range(6)}) > 1


def test_blur_keeps_a_constant_image_and_smooths_noise(images: torch.Tensor):
    constant = torch.full_like(images, 0.3)
    assert torch.allclose(gaussian_blur(constant, seeded(17), p=1.0), constant, atol=1e-6)
    blurred = gaussian_blur(images, seeded(17), sigma=(1.0, 2.0), p=1.0)
    assert blurred.std() < images.std()
    assert torch.equal(gaussian_blur(images, seeded(17), p=0.0), images)
    with pytest.raises(TicketlabError):
        gaussian_blur(images, seeded(17), kernel_size=4)


def test_jitter_and_grayscale_identities(images: torch.Tensor):
    assert torch.equal(color_jitter(images, seeded(18), p=0.0), images)
    jittered = color_jitter(images, seeded(18), p=1.0)
    assert not torch.equal(jittered, images) and jittered.min() >= 0 and jittered.max() <= 1
    gray = random_grayscale(images, seeded(19), p=1.0)
    if images.shape[1] == 3:
        assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    else:
        assert torch.equal(gray, images)


def test_hue_only_jitter_keeps_grays_gray():
    gray = torch.rand(3, 1, 8, 8, generator=seeded(20)).expand(-1, 3, -1, -1)
    shifted = color_jitter(gray, seeded(21), 0.0, 0.0, 0.0, 0.5, p=1.0)
    assert torch.allclose(shifted, gray, atol=1e-5)


def test_augmentations_refuse_non_batches():
    with pytest.raises(TicketlabError):
        random_horizontal_flip(torch.rand(3, 8, 8), seeded(0))
