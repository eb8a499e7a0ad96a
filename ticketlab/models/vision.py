"""The ResNets as Hugging Face models, so vision runs load, save, prune and transfer exactly as the text models do.

A pre-trained vision model is a Hugging Face folder (config.json with model_type "ticketlab-resnet", and
model.safetensors holding the backbone in torchvision's layout without `fc`). From it, `ResNetForImageClassification`
adds a fresh classifier (`fc`) and `ResNetForContrastiveLearning` a projection head, and for MoCo a momentum encoder
and a queue of keys. The classes are registered with AutoConfig, AutoModel and AutoModelForImageClassification.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.utils import ModelOutput

from ..catalog import LAYOUTS
from ..errors import TicketlabError
from ..pretraining.contrastive import ProjectionHead, Queue, frozen_copy, info_nce, momentum_update, nt_xent
from .resnet import (
    BasicBlock,
    Bottleneck,
    add_resnet_modules,
    init_resnet_module,
    load_resnet_weights,
    prunable_conv_weights,
    resnet_features,
)
from .text import config_values

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
CONTRASTIVE_METHODS = ("simclr", "moco")


class ResNetConfig(PreTrainedConfig):
    """A ResNet's layout, and the settings of the contrastive heads (used only by ResNetForContrastiveLearning)."""

    model_type = "ticketlab-resnet"

    def __init__(
        self,
        block: str = "basic",
        layers: list[int] = (2, 2, 2),
        widths: list[int] = (16, 32, 64),
        in_channels: int = 1,
        small_stem: bool = True,
        contrastive: str = "simclr",
        projection_dim: int = 64,
        loss_temperature: float = 0.5,
        queue_size: int = 4096,
        momentum: float = 0.99,
        **kwargs,
    ):
        if block not in BLOCKS:
            raise TicketlabError(f"unknown ResNet block {block!r}; known: {', '.join(BLOCKS)}")
        if contrastive not in CONTRASTIVE_METHODS:
            raise TicketlabError(f"unknown contrastive method {contrastive!r}; known: {', '.join(CONTRASTIVE_METHODS)}")
        self.block, self.layers, self.widths = block, list(layers), list(widths)
        self.in_channels, self.small_stem = in_channels, small_stem
        self.contrastive, self.projection_dim, self.loss_temperature = contrastive, projection_dim, loss_temperature
        self.queue_size, self.momentum = queue_size, momentum
        super().__init__(**kwargs)

    @classmethod
    def for_architecture(cls, name: str, **kwargs) -> "ResNetConfig":
        """The config of a named architecture (resnet18, resnet50, resnet-small)."""
        if name not in LAYOUTS:
            raise TicketlabError(f"unknown architecture {name!r}; known: {', '.join(LAYOUTS)}")
        return cls(**{**LAYOUTS[name], **kwargs})

    @property
    def hidden_size(self) -> int:
        """The width of the pooled features (what picks a task's recipe, as for text models)."""
        return self.widths[-1] * BLOCKS[self.block].expansion


class ResNetPreTrainedModel(PreTrainedModel):
    config_class = ResNetConfig
    base_model_prefix = "resnet"
    main_input_name = "pixel_values"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        init_resnet_module(module)
        if isinstance(module, nn.Linear):
            module.reset_parameters()
        elif isinstance(module, Queue):
            module.keys.copy_(F.normalize(torch.randn_like(module.keys), dim=1))
            module.pointer.zero_()
        elif isinstance(module, ResNetForContrastiveLearning) and module.config.contrastive == "moco":
            module.momentum_started.fill_(False)  # a loaded model's momentum encoder is copied at its first step


class ResNetModel(ResNetPreTrainedModel):
    """The backbone: torchvision's ResNet up to the pooled features, under torchvision's names."""

    def __init__(self, config: ResNetConfig):
        super().__init__(config)
        self.stages = add_resnet_modules(
            self,
            BLOCKS[config.block],
            tuple(config.layers),
            tuple(config.widths),
            config.in_channels,
            config.small_stem,
        )
        self.post_init()

    def forward(self, pixel_values: Tensor, **_) -> BaseModelOutputWithPooling:
        return BaseModelOutputWithPooling(pooler_output=resnet_features(self, self.stages, pixel_values))

    def prunable_weights(self) -> dict[str, nn.Parameter]:
        """The CV paper's scope: every conv weight but the first conv's (BatchNorm and classifiers never)."""
        return prunable_conv_weights(self)


class ResNetForImageClassification(ResNetPreTrainedModel):
    """The backbone and a linear classifier `fc` over `config.num_labels` classes; cross-entropy with `labels`."""

    def __init__(self, config: ResNetConfig):
        super().__init__(config)
        self.resnet = ResNetModel(config)
        self.fc = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, pixel_values: Tensor, labels: Tensor | None = None, **_) -> ImageClassifierOutput:
        logits = self.fc(self.resnet(pixel_values).pooler_output)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


@dataclass
class ContrastiveOutput(ModelOutput):
    """The contrastive loss (when two views were given) and the backbone's pooled features of the first view."""

    loss: Tensor | None = None
    features: Tensor | None = None


class ResNetForContrastiveLearning(ResNetPreTrainedModel):
    """Self-supervised pre-training of the backbone: SimCLR (projection head, NT-Xent over the two views of each
    image) or MoCo v2 (the query view through backbone and head, the key view through their momentum copies, InfoNCE
    against a queue of earlier keys), as `config.contrastive` says.

    The momentum encoder (its weights are buffers: no optimizer trains them) and the queue are parts of the model, so
    checkpoints keep them. The momentum encoder starts as a copy of the online one at the first training step
    (`momentum_started`).
    """

    def __init__(self, config: ResNetConfig):
        super().__init__(config)
        self.resnet = ResNetModel(config)
        self.projection = ProjectionHead(config.hidden_size, config.hidden_size, config.projection_dim)
        if config.contrastive == "moco":
            self.momentum_resnet = frozen_copy(self.resnet)
            self.momentum_projection = frozen_copy(self.projection)
            self.queue = Queue(config.queue_size, config.projection_dim)
            self.register_buffer("momentum_started", torch.zeros((), dtype=torch.bool))
        self.post_init()

    def forward(self, pixel_values: Tensor, positive_values: Tensor | None = None, **_) -> ContrastiveOutput:
        features = self.resnet(pixel_values).pooler_output
        if positive_values is None:
            return ContrastiveOutput(features=features)
        query = self.projection(features)
        if self.config.contrastive == "simclr":
            positive = self.projection(self.resnet(positive_values).pooler_output)
            return ContrastiveOutput(loss=nt_xent(query, positive, self.config.loss_temperature), features=features)
        with torch.no_grad():
            if self.training:
                self._momentum_step()
            key = self.momentum_projection(self.momentum_resnet(positive_values).pooler_output)
        loss = info_nce(query, key, self.queue, self.config.loss_temperature)
        if self.training:
            self.queue.enqueue(key)
        return ContrastiveOutput(loss=loss, features=features)

    def _momentum_step(self) -> None:
        momentum = self.config.momentum if bool(self.momentum_started) else 0.0  # 0: copy the online encoder
        momentum_update(self.resnet, self.momentum_resnet, momentum)
        momentum_update(self.projection, self.momentum_projection, momentum)
        self.momentum_started.fill_(True)


def is_resnet(path: Path) -> bool:
    """Whether the model folder holds one of these ResNets (no tokenizer, no attention heads)."""
    return config_values(path, "model_type")[0] == ResNetConfig.model_type


def import_resnet(weights: str | Path, architecture: str, out: str | Path, in_channels: int = 3) -> Path:
    """A torchvision-layout state dict (.pth or .safetensors; ImageNet supervised, or SimCLR / MoCo converted to that
    layout) as a pre-trained model folder that every ticketlab verb takes (its `fc`, if any, is left out)."""
    if Path(out).exists():
        raise TicketlabError(f"{out} exists already; choose a new folder")
    if in_channels < 1:
        raise TicketlabError(f"in_channels must be at least 1, got {in_channels}")
    model = ResNetModel(ResNetConfig.for_architecture(architecture, in_channels=in_channels))
    load_resnet_weights(model, weights, skip_classifier=True)
    model.save_pretrained(out)
    return Path(out)


AutoConfig.register(ResNetConfig.model_type, ResNetConfig, exist_ok=True)
AutoModel.register(ResNetConfig, ResNetModel, exist_ok=True)
AutoModelForImageClassification.register(ResNetConfig, ResNetForImageClassification, exist_ok=True)
