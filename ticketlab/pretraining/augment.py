"""SimCLR / MoCo v2 augmentations in plain torch on float image batches [N, C, H, W] in [0, 1].

Every function draws its random numbers from an explicit `torch.Generator`, one set per image and always the same
count whatever the values, so a seed fixes the views. Crops resample bilinearly with grid_sample (no antialiasing,
unlike torchvision's resize).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import TicketlabError

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale
RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


@dataclass(frozen=True)
class ViewRecipe:
    """One view's augmentation settings, in SimCLR's order: crop, flip, colour jitter, grayscale, blur."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 0.2)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_p: float = 0.5


SIMCLR = ViewRecipe()  # colour strength s = 1
MOCO_V2 = ViewRecipe(jitter=(0.4, 0.4, 0.4, 0.1))


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or not images.is_floating_point():
        raise TicketlabError(f"images must be a float batch [N, C, H, W], got {images.dtype} {tuple(images.shape)}")


def _uniform(generator: torch.Generator, shape: tuple[int, ...], low: float, high: float, like: Tensor) -> Tensor:
    draws = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64)
    return (low + (high - low) * draws).to(device=like.device, dtype=like.dtype)


def _coin(generator: torch.Generator, images: Tensor, p: float) -> Tensor:
    """One bool per image, True with probability p."""
    return _uniform(generator, (images.shape[0],), 0.0, 1.0, images) < p


def _per_image(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


def _luma(images: Tensor) -> Tensor:
    """Grayscale [N, 1, H, W]; a 1-channel batch is its own."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    factor = _per_image(factor)
    return (factor * images + (1 - factor) * other).clamp(0, 1)


def random_resized_crop(
    images: Tensor,
    generator: torch.Generator,
    size: int | tuple[int, int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> Tensor:
    """torchvision's RandomResizedCrop per image: a box of `scale` x the area and aspect in `ratio` (log-uniform),
    the first of `attempts` draws that fits, else the centre crop clamped to `ratio`; resized to `size`."""
    _check_images(images)
    n, c, height, width = images.shape
    out_h, out_w = (size, size) if isinstance(size, int) else size
    area = height * width * _uniform(generator, (n, attempts), *scale, images)
    aspect = _uniform(generator, (n, attempts), math.log(ratio[0]), math.log(ratio[1]), images).exp()
    box_w, box_h = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
    fits = (box_w >= 1) & (box_w <= width) & (box_h >= 1) & (box_h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    fallback_h, fallback_w = _centre_box(height, width, ratio)
    box_w = torch.where(found, box_w.gather(1, first).squeeze(1), float(fallback_w))
    box_h = torch.where(found, box_h.gather(1, first).squeeze(1), float(fallback_h))
    offsets = _uniform(generator, (2, n), 0.0, 1.0, images)
    top = torch.where(found, (offsets[0] * (height - box_h + 1)).floor(), float((height - fallback_h) // 2))
    left = torch.where(found, (offsets[1] * (width - box_w + 1)).floor(), float((width - fallback_w) // 2))
    return _resample(images, top, left, box_h, box_w, out_h, out_w)


def _centre_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback box (height, width): the whole image, narrowed to the nearest allowed aspect."""
    if width / height < min(ratio):
        return round(width / min(ratio)), width
    if width / height > max(ratio):
        return height, round(height * max(ratio))
    return height, width


def _resample(
    images: Tensor, top: Tensor, left: Tensor, box_h: Tensor, box_w: Tensor, out_h: int, out_w: int
) -> Tensor:
    """Bilinear resampling of each image's box (pixel units) onto an out_h x out_w grid."""
    n, c, height, width = images.shape
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = box_w / width
    theta[:, 0, 2] = (2 * left + box_w) / width - 1
    theta[:, 1, 1] = box_h / height
    theta[:, 1, 2] = (2 * top + box_h) / height - 1
    grid = F.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)


def random_horizontal_flip(images: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability p."""
    _check_images(images)
    return torch.where(_per_image(_coin(generator, images, p)), images.flip(-1), images)


def color_jitter(
    images: Tensor,
    generator: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 0.8,
) -> Tensor:
    """With probability p per image, scale brightness, contrast and saturation by factors in [1 - s, 1 + s] and shift
    hue by up to `hue` of a turn, in that fixed order (torchvision shuffles it). 1-channel images get brightness and
    contrast only. Hue turns the chroma plane of YIQ, a linear stand-in for torchvision's HSV shift."""
    _check_images(images)
    if min(brightness, contrast, saturation) < 0 or not 0 <= hue <= 0.5:
        raise TicketlabError(
            f"jitter strengths must be >= 0 and hue in [0, 0.5], got {brightness, contrast, saturation, hue}"
        )
    chosen = _coin(generator, images, p)
    n = images.shape[0]

    def factor(strength: float) -> Tensor:
        return torch.where(chosen, _uniform(generator, (n,), max(0.0, 1 - strength), 1 + strength, images), 1.0)

    brightness_f, contrast_f, saturation_f = factor(brightness), factor(contrast), factor(saturation)
    turns = torch.where(chosen, _uniform(generator, (n,), -hue, hue, images), 0.0)
    out = _blend(images, torch.zeros_like(images), brightness_f)
    out = _blend(out, _luma(out).mean(dim=(1, 2, 3), keepdim=True), contrast_f)
    if images.shape[1] == 3:
        out = _rotate_hue(_blend(out, _luma(out), saturation_f), turns)
    return out


def _rotate_hue(images: Tensor, turns: Tensor) -> Tensor:
    """Rotate each RGB image's (I, Q) chroma by `turns` of a circle; zero turns leave the image exactly as it is."""
    to_yiq = images.new_tensor(RGB_TO_YIQ)
    angle = 2 * math.pi * turns
    rotation = torch.zeros(images.shape[0], 3, 3, dtype=images.dtype, device=images.device)
    rotation[:, 1, 1] = rotation[:, 2, 2] = angle.cos() - 1
    rotation[:, 1, 2], rotation[:, 2, 1] = -angle.sin(), angle.sin()
    matrix = torch.eye(3, dtype=images.dtype, device=images.device) + torch.linalg.inv(to_yiq) @ rotation @ to_yiq
    return torch.einsum("nij,njhw->nihw", matrix, images).clamp(0, 1)


def random_grayscale(images: Tensor, generator: torch.Generator, p: float = 0.2) -> Tensor:
    """Replace each RGB image by its luma on all three channels with probability p; other channel counts pass."""
    _check_images(images)
    chosen = _coin(generator, images, p)
    if images.shape[1] != 3:
        return images
    return torch.where(_per_image(chosen), _luma(images).expand_as(images), images)


def default_blur_kernel(side: int) -> int:
    """SimCLR's kernel: about 10% of the image side, odd, at least 3 (23 at 224)."""
    return max(3, int(0.1 * side) // 2 * 2 + 1)


def gaussian_blur(
    images: Tensor,
    generator: torch.Generator,
    sigma: tuple[float, float] = (0.1, 2.0),
    kernel_size: int | None = None,
    p: float = 0.5,
) -> Tensor:
    """With probability p per image, a separable Gaussian blur of sigma uniform in `sigma`, reflecting at the edges."""
    _check_images(images)
    n, c, height, width = images.shape
    size = kernel_size or default_blur_kernel(min(height, width))
    radius = size // 2
    if size % 2 == 0 or radius >= min(height, width) or not 0 < sigma[0] <= sigma[1]:
        raise TicketlabError(f"blur needs an odd kernel smaller than the image and 0 < sigma, got {size} and {sigma}")
    chosen = _coin(generator, images, p)
    sigmas = _uniform(generator, (n,), *sigma, images)
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernels = torch.softmax(-(offsets**2) / (2 * sigmas[:, None] ** 2), dim=1)  # normalized Gaussians
    kernels = torch.where(chosen[:, None], kernels, (offsets == 0).to(images.dtype))  # identity where not chosen
    weights = kernels.repeat_interleave(c, dim=0)
    flat = images.reshape(1, n * c, height, width)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), weights.view(n * c, 1, 1, size), groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), weights.view(n * c, 1, size, 1), groups=n * c)
    return flat.reshape(n, c, height, width).clamp(0, 1)


def augment_view(
    images: Tensor, generator: torch.Generator, size: int | tuple[int, int], recipe: ViewRecipe = SIMCLR
) -> Tensor:
    """One augmented view of each image, SimCLR's pipeline (MoCo v2 uses the same one with weaker jitter)."""
    out = random_resized_crop(images, generator, size, recipe.scale, recipe.ratio)
    out = random_horizontal_flip(out, generator, recipe.flip_p)
    out = color_jitter(out, generator, *recipe.jitter, p=recipe.jitter_p)
    out = random_grayscale(out, generator, recipe.grayscale_p)
    return gaussian_blur(out, generator, recipe.blur_sigma, p=recipe.blur_p)


def simclr_views(
    images: Tensor, generator: torch.Generator, size: int | tuple[int, int], recipe: ViewRecipe = SIMCLR
) -> tuple[Tensor, Tensor]:
    """Two independent augmented views of each image, for a contrastive loss."""
    return augment_view(images, generator, size, recipe), augment_view(images, generator, size, recipe)
