"""ResNets in plain PyTorch with torchvision's parameter names, their weight loading, and the prunable scope.

We write the ResNets ourselves because torchvision has no CPU build here (its wheels need CUDA torch), yet users
bring torchvision-layout checkpoints: every parameter and buffer name equals torchvision's state_dict key, so those
files load as they are.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from ..errors import TicketlabError
from ..registry import Registry

ARCHITECTURES: Registry[Callable[..., "ResNet"]] = Registry("architecture")
CLASSIFIER = "fc."
STEM_CONV = "conv1.weight"


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's v1.5), 1x1 expand by 4, and a shortcut (ResNet-50+)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def add_resnet_modules(
    module: nn.Module,
    block: type[BasicBlock | Bottleneck],
    layers: tuple[int, ...],
    widths: tuple[int, ...],
    in_channels: int = 3,
    small_stem: bool = False,
) -> list[str]:
    """Add torchvision's ResNet modules up to the pooling (conv1, bn1, relu, maxpool, layer1..., avgpool) to `module`,
    initialised as torchvision does; returns the stage names. The plain ResNet and the Hugging Face backbone
    (ticketlab.models.vision) share this one layout.

    The first stage keeps the resolution, every later one halves it. `small_stem` swaps the 7x7 stride-2 conv and
    the max-pool for a 3x3 stride-1 conv and no pooling (the CIFAR-style stem); `maxpool` is then an Identity, which
    holds no state, so names stay torchvision's.
    """
    if len(layers) != len(widths):
        raise TicketlabError(f"a ResNet needs one width per stage: {len(layers)} stages, {len(widths)} widths")
    module.conv1 = (
        conv3x3(in_channels, widths[0]) if small_stem else nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
    )
    module.bn1 = nn.BatchNorm2d(widths[0])
    module.relu = nn.ReLU(inplace=True)
    module.maxpool = nn.Identity() if small_stem else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    stages, inplanes = [f"layer{index + 1}" for index in range(len(layers))], widths[0]
    for index, (name, blocks, planes) in enumerate(zip(stages, layers, widths)):
        stride = 1 if index == 0 else 2
        downsample = None
        if stride != 1 or inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        stage = [block(inplanes, planes, stride, downsample)]
        inplanes = planes * block.expansion
        stage += [block(inplanes, planes) for _ in range(1, blocks)]
        module.add_module(name, nn.Sequential(*stage))
    module.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    for child in module.modules():
        init_resnet_module(child)
    return stages


@torch.no_grad()
def init_resnet_module(module: nn.Module) -> None:
    """torchvision's initialisation of one conv or BatchNorm (others are left as they are)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
        module.reset_running_stats()


def resnet_features(module: nn.Module, stages: list[str], x: Tensor) -> Tensor:
    """The pooled features [N, width] of a module that `add_resnet_modules` built."""
    x = module.maxpool(module.relu(module.bn1(module.conv1(x))))
    for name in stages:
        x = getattr(module, name)(x)
    return torch.flatten(module.avgpool(x), 1)


class ResNet(nn.Module):
    """torchvision's ResNet, with the stem and the stage widths open so the same layout serves small images."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, ...],
        widths: tuple[int, ...] = (64, 128, 256, 512),
        num_classes: int = 1000,
        in_channels: int = 3,
        small_stem: bool = False,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        self.stages = add_resnet_modules(self, block, layers, widths, in_channels, small_stem)
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.constant_(module.bn3.weight, 0)
                elif isinstance(module, BasicBlock):
                    nn.init.constant_(module.bn2.weight, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(resnet_features(self, self.stages, x))


@ARCHITECTURES.register("resnet18")
def resnet18(num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False) -> ResNet:
    """torchvision's resnet18 (11,689,512 parameters at 1000 classes)."""
    return ResNet(
        BasicBlock,
        (2, 2, 2, 2),
        num_classes=num_classes,
        in_channels=in_channels,
        zero_init_residual=zero_init_residual,
    )


@ARCHITECTURES.register("resnet50")
def resnet50(num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False) -> ResNet:
    """torchvision's resnet50, v1.5 (25,557,032 parameters at 1000 classes)."""
    return ResNet(
        Bottleneck,
        (3, 4, 6, 3),
        num_classes=num_classes,
        in_channels=in_channels,
        zero_init_residual=zero_init_residual,
    )


@ARCHITECTURES.register("resnet-small")
def resnet_small(
    num_classes: int = 10,
    in_channels: int = 1,
    width: int = 16,
    blocks: tuple[int, ...] = (2, 2, 2),
    zero_init_residual: bool = False,
) -> ResNet:
    """A CIFAR-style ResNet for small images (28x28 Fashion-MNIST by default): 3x3 stem, no max-pool, BasicBlocks,
    widths width, 2*width, 4*width, ... (174,970 parameters with the defaults)."""
    widths = tuple(width * 2**index for index in range(len(blocks)))
    return ResNet(
        BasicBlock,
        tuple(blocks),
        widths,
        num_classes=num_classes,
        in_channels=in_channels,
        small_stem=True,
        zero_init_residual=zero_init_residual,
    )


def build_resnet(name: str, **kwargs) -> ResNet:
    """An architecture by name (resnet18, resnet50, resnet-small), freshly initialised."""
    return ARCHITECTURES.get(name)(**kwargs)


def load_resnet_weights(model: nn.Module, path: Path | str, skip_classifier: bool = False) -> None:
    """Load a torchvision-layout state dict from a .pth/.pt or .safetensors file into `model`, strictly.

    A .pth may hold the state dict bare or under "state_dict" or "model", with DataParallel's "module." prefixes.
    `skip_classifier` ignores the file's fc.* (a downstream task with another number of classes, or a backbone-only
    file) and keeps the model's own fc. BatchNorm's num_batches_tracked may be absent, as in older torchvision files.
    """
    path = Path(path)
    state = _read_state_dict(path)
    expected = model.state_dict()
    if skip_classifier:
        state = {name: value for name, value in state.items() if not name.startswith(CLASSIFIER)}
        expected = {name: value for name, value in expected.items() if not name.startswith(CLASSIFIER)}
    missing = [name for name in expected if name not in state and not name.endswith("num_batches_tracked")]
    unexpected = [name for name in state if name not in expected]
    if missing:
        raise TicketlabError(f"{path} does not fit the model: {len(missing)} weight(s) missing, first {missing[0]!r}")
    if unexpected:
        raise TicketlabError(
            f"{path} does not fit the model: {len(unexpected)} unexpected weight(s), first {unexpected[0]!r}"
        )
    for name, wanted in expected.items():  # in the model's order, whatever the file's
        if name in state and state[name].shape != wanted.shape:
            raise TicketlabError(
                f"{path} does not fit the model: {name!r} has shape {tuple(state[name].shape)}, "
                f"the model expects {tuple(wanted.shape)}"
            )
    model.load_state_dict(
        state, strict=False
    )  # every key is checked above; skipped fc and absent counters stay as they are


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """The name -> tensor dict a checkpoint file holds, with "module." prefixes stripped."""
    if not path.is_file():
        raise TicketlabError(f"no weight file at {path}")
    try:
        data = load_file(path, device="cpu") if path.suffix == ".safetensors" else _load_pickled(path)
    except (OSError, SafetensorError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TicketlabError(f"cannot read weights from {path}: {message}") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not data or not all(isinstance(value, Tensor) for value in data.values()):
        raise TicketlabError(f"{path} holds no state dict (name -> tensor)")
    return {name.removeprefix("module."): value for name, value in data.items()}


def _load_pickled(path: Path) -> object:
    """What a .pth/.pt file holds, read by torch's weights-only unpickler (tensors and plain containers, no code)."""
    try:
        with warnings.catch_warnings():  # a pickle protocol torch did not write: it reads or fails, in one line below
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as error:  # bytes that are no checkpoint (a text file) fail with whatever error they lead to
        raise TicketlabError(
            f"cannot read weights from {path}: not a PyTorch checkpoint of tensors ({_unpickling_reason(error)})"
        ) from None


def _unpickling_reason(error: Exception) -> str:
    """The one informative line of an unpickling error: torch's weights-only refusal wraps it in a paragraph."""
    lines = [line.strip() for line in str(error).split("WeightsUnpickler error:")[-1].splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def prunable_conv_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights IMP prunes in a ResNet, as the CV lottery-ticket paper does: every conv weight (downsample convs
    included) but the first conv's; the fc classifier and BatchNorm are never pruned."""
    return {
        f"{name}.weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and f"{name}.weight" != STEM_CONV
    }
