"""ResNets with torchvision's names: layout, forward, weight loading and its refusals, the prunable scope."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.resnet import (
    build_resnet,
    load_resnet_weights,
    prunable_conv_weights,
    resnet18,
    resnet50,
    resnet_small,
)


def torchvision_layout(
    layers: tuple[int, ...], expansion: int, num_classes: int = 1000, in_channels: int = 3
) -> list[tuple[str, tuple[int, ...]]]:
    """torchvision's state_dict (names in order, shapes), written from its architecture description."""
    entries: list[tuple[str, tuple[int, ...]]] = []

    def conv(name: str, out: int, inp: int, kernel: int) -> None:
        entries.append((f"{name}.weight", (out, inp, kernel, kernel)))

    def bn(name: str, channels: int) -> None:
        entries.extend((f"{name}.{field}", (channels,)) for field in ("weight", "bias", "running_mean", "running_var"))
        entries.append((f"{name}.num_batches_tracked", ()))

    conv("conv1", 64, in_channels, 7)
    bn("bn1", 64)
    inplanes = 64
    for stage, (count, width) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
        for index in range(count):
            block = f"layer{stage}.{index}"
            if expansion == 1:
                conv(f"{block}.conv1", width, inplanes, 3)
                bn(f"{block}.bn1", width)
                conv(f"{block}.conv2", width, width, 3)
                bn(f"{block}.bn2", width)
            else:
                conv(f"{block}.conv1", width, inplanes, 1)
                bn(f"{block}.bn1", width)
                conv(f"{block}.conv2", width, width, 3)
                bn(f"{block}.bn2", width)
                conv(f"{block}.conv3", width * expansion, width, 1)
                bn(f"{block}.bn3", width * expansion)
            if index == 0 and (stage > 1 or inplanes != width * expansion):
                conv(f"{block}.downsample.0", width * expansion, inplanes, 1)
                bn(f"{block}.downsample.1", width * expansion)
            inplanes = width * expansion
    entries += [("fc.weight", (num_classes, 512 * expansion)), ("fc.bias", (num_classes,))]
    return entries


@pytest.fixture(scope="module")
def r18() -> nn.Module:
    torch.manual_seed(0)
    return resnet18()


@pytest.fixture(scope="module")
def r50() -> nn.Module:
    torch.manual_seed(0)
    return resnet50()


def layout(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(value.shape)) for name, value in model.state_dict().items()]


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_resnet18_layout_is_torchvisions(r18):
    assert layout(r18) == torchvision_layout((2, 2, 2, 2), expansion=1)
    # 20 convs (stem, 16 in blocks, 3 downsample), 20 BN (weight, bias; 3 buffers each), fc (weight, bias)
    assert len(list(r18.parameters())) == 20 + 2 * 20 + 2 == 62
    assert len(r18.state_dict()) == 62 + 3 * 20 == 122
    assert len([k for k in r18.state_dict() if not k.endswith("num_batches_tracked")]) == 102  # torchvision's old files
    assert sum(p.numel() for p in r18.parameters()) == 11_689_512
    assert r18.state_dict()["layer2.0.downsample.1.running_mean"].shape == (128,)
    assert r18.state_dict()["fc.weight"].shape == (1000, 512)
    assert "bn1.num_batches_tracked" in r18.state_dict()


def test_resnet50_layout_is_torchvisions(r50):
    assert layout(r50) == torchvision_layout((3, 4, 6, 3), expansion=4)
    assert len(r50.state_dict()) == 320
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032
    state = r50.state_dict()
    assert state["layer3.0.downsample.0.weight"].shape == (1024, 512, 1, 1)
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["fc.weight"].shape == (1000, 2048)
    # v1.5: the stride sits on the 3x3 conv, not the first 1x1
    assert r50.layer2[0].conv1.stride == (1, 1) and r50.layer2[0].conv2.stride == (2, 2)
    assert r50.layer2[0].downsample[0].stride == (2, 2)


def test_batchnorm_and_init_follow_torchvision(r50):
    norms = [m for m in r50.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.eps == 1e-5 and m.momentum == 0.1 for m in norms)
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)  # zero_init_residual off
    weight = r50.layer4[0].conv2.weight  # kaiming fan_out: std = sqrt(2 / (512 * 3 * 3))
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    assert not any(m.bias is not None for m in r50.modules() if isinstance(m, nn.Conv2d))
    zeroed = resnet_small(zero_init_residual=True)
    assert all(torch.all(block.bn2.weight == 0) for block in zeroed.layer2)


def test_forward_shapes_and_options():
    torch.manual_seed(0)
    assert resnet18().eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    small = build_resnet("resnet-small")
    assert small(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    gray = resnet18(num_classes=7, in_channels=1)
    assert gray.conv1.weight.shape == (64, 1, 7, 7) and gray.fc.weight.shape == (7, 512)
    wide = resnet_small(num_classes=5, in_channels=3, width=8, blocks=(1, 1, 1, 1))
    assert wide(torch.randn(2, 3, 32, 32)).shape == (2, 5) and wide.fc.in_features == 64
    assert [name for name, _ in small.named_children()][:4] == ["conv1", "bn1", "relu", "maxpool"]


def test_unknown_architecture_is_refused():
    with pytest.raises(TicketlabError) as error:
        build_resnet("resnet101")
    assert "resnet101" in one_line(error) and "resnet-small, resnet18, resnet50" in str(error.value)


def trained_small(seed: int, **kwargs) -> nn.Module:
    """A resnet-small whose BN statistics have moved off their initial 0/1, in eval mode."""
    torch.manual_seed(seed)
    model = resnet_small(**kwargs)
    model(torch.randn(8, 1, 28, 28))
    return model.eval()


@pytest.mark.parametrize("form", ["bare", "state_dict+module", "model", "safetensors"])
def test_weights_round_trip(tmp_path, form):
    source, target = trained_small(0), trained_small(1)
    state = source.state_dict()
    if form == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(state, path)
    else:
        path = tmp_path / "w.pth"
        if form == "state_dict+module":
            torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
        else:
            torch.save(state if form == "bare" else {"model": state}, path)
    images = torch.randn(4, 1, 28, 28)
    assert not torch.equal(source(images), target(images))
    load_resnet_weights(target, path)
    assert torch.equal(source(images), target(images))


def test_resnet18_round_trip(tmp_path, r18):
    r18.eval()
    path = tmp_path / "r18.pth"
    torch.save(r18.state_dict(), path)
    torch.manual_seed(1)
    fresh = resnet18().eval()
    load_resnet_weights(fresh, path)
    images = torch.randn(1, 3, 64, 64)
    assert torch.equal(fresh(images), r18(images))


def test_file_without_batch_counters_loads(tmp_path):
    source, target = trained_small(0), trained_small(1)
    path = tmp_path / "old.pth"
    torch.save({k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    load_resnet_weights(target, path)
    images = torch.randn(2, 1, 28, 28)
    assert torch.equal(source(images), target(images))


def refusal(model: nn.Module, path, **kwargs) -> str:
    with pytest.raises(TicketlabError) as error:
        load_resnet_weights(model, path, **kwargs)
    return one_line(error)


def test_mismatched_files_are_refused(tmp_path, r18, r50):
    model = trained_small(0)
    state = model.state_dict()
    path = tmp_path / "w.pth"

    torch.save({k: v for k, v in state.items() if k not in ("layer1.0.bn1.running_var", "fc.bias")}, path)
    message = refusal(model, path)
    assert "2 weight(s) missing" in message and "layer1.0.bn1.running_var" in message

    torch.save({**state, "layer9.0.conv1.weight": torch.zeros(1)}, path)
    message = refusal(model, path)
    assert "1 unexpected" in message and "layer9.0.conv1.weight" in message

    torch.save(resnet_small(in_channels=3).state_dict(), path)
    message = refusal(model, path)
    assert "'conv1.weight'" in message and "(16, 3, 3, 3)" in message and "(16, 1, 3, 3)" in message

    torch.save(r18.state_dict(), path)
    assert "does not fit" in refusal(r50, path)


def test_unreadable_files_are_refused(tmp_path):
    model = trained_small(0)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    assert "cannot read weights" in refusal(model, garbage)

    truncated = tmp_path / "truncated.pth"
    torch.save(model.state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    assert "cannot read weights" in refusal(model, truncated)

    broken = tmp_path / "broken.safetensors"
    save_file(model.state_dict(), broken)
    broken.write_bytes(broken.read_bytes()[:100])
    assert "cannot read weights" in refusal(model, broken)

    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    assert "no state dict" in refusal(model, listing)

    assert "no weight file" in refusal(model, tmp_path / "absent.pth")


def test_skip_classifier_keeps_the_fresh_fc(tmp_path):
    source = trained_small(0)
    path = tmp_path / "ten-classes.safetensors"
    save_file(source.state_dict(), path)
    target = trained_small(1, num_classes=3)
    fc_before = {k: v.clone() for k, v in target.fc.state_dict().items()}

    assert "'fc.weight'" in refusal(target, path)
    load_resnet_weights(target, path, skip_classifier=True)
    assert all(torch.equal(v, fc_before[k]) for k, v in target.fc.state_dict().items())
    assert torch.equal(target.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert torch.equal(target.bn1.running_mean, source.bn1.running_mean)

    backbone_only = tmp_path / "backbone.pth"
    torch.save({k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}, backbone_only)
    load_resnet_weights(target, backbone_only, skip_classifier=True)


def test_prunable_scope(r18, r50):
    weights = prunable_conv_weights(r18)
    expected = [
        name for name, shape in torchvision_layout((2, 2, 2, 2), 1) if len(shape) == 4 and name != "conv1.weight"
    ]
    assert list(weights) == expected and len(weights) == 19  # 16 block convs + 3 downsample convs
    assert "conv1.weight" not in weights and "layer2.0.downsample.0.weight" in weights
    assert not any(name.startswith("fc.") or ".bn" in name or "downsample.1" in name for name in weights)
    assert all(weights[name] is param for name, param in r18.named_parameters() if name in weights)
    assert len(prunable_conv_weights(r50)) == 16 * 3 + 4  # 52
    assert "layer1.0.conv1.weight" in prunable_conv_weights(resnet_small())
