"""Self-supervised pre-training parts: SimCLR / MoCo v2 augmentations, losses, projection head, momentum encoder."""

from .augment import (
    MOCO_V2,
    SIMCLR,
    ViewRecipe,
    augment_view,
    color_jitter,
    gaussian_blur,
    random_grayscale,
    random_horizontal_flip,
    random_resized_crop,
    simclr_views,
)
from .contrastive import ProjectionHead, Queue, frozen_copy, info_nce, momentum_update, nt_xent

__all__ = [
    "MOCO_V2",
    "SIMCLR",
    "ProjectionHead",
    "Queue",
    "ViewRecipe",
    "augment_view",
    "color_jitter",
    "frozen_copy",
    "gaussian_blur",
    "info_nce",
    "momentum_update",
    "nt_xent",
    "random_grayscale",
    "random_horizontal_flip",
    "random_resized_crop",
    "simclr_views",
]
