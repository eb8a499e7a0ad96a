"""The ResNets as Hugging Face models: torchvision's layout, importing torchvision-layout weights, the classifier,
and the contrastive models (SimCLR's loss by hand; MoCo's momentum encoder and queue step by step)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY_RESNET, TINY_RESNET_PRUNABLE
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from ticketlab.errors import TicketlabError
from ticketlab.models import (
    ResNetConfig,
    ResNetForContrastiveLearning,
    ResNetForImageClassification,
    ResNetModel,
    head_parameters,
    import_resnet,
    layer_stack_weights,
    load_pretrained,
    prunable_weights,
    resnet18,
)
from ticketlab.models.resnet import resnet_features
from ticketlab.pretraining import info_nce, nt_xent

pytestmark = pytest.mark.usefixtures("one_thread")

MOCO = dict(contrastive="moco", queue_size=32, momentum=0.9, loss_temperature=0.2)


def save_tiny_resnet(path):
    """The tiny backbone, seeded, with BatchNorm statistics that are not the defaults (so loading them shows)."""
    torch.manual_seed(0)
    model = ResNetModel(ResNetConfig(**TINY_RESNET))
    randomize_batchnorm(model)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_resnet(tmp_path_factory.mktemp("tiny-resnet"))


def randomize_batchnorm(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(7)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


# --- the backbone and torchvision's layout ----------------------------------------------------------------------------


def test_resnet18_backbone_has_torchvisions_state_dict_without_fc():
    torch.manual_seed(0)
    plain = resnet18()
    backbone = ResNetModel(ResNetConfig.for_architecture("resnet18", in_channels=3))
    expected = [(name, tuple(value.shape)) for name, value in plain.state_dict().items() if not name.startswith("fc.")]
    assert [(name, tuple(value.shape)) for name, value in backbone.state_dict().items()] == expected
    assert backbone.config.hidden_size == 512 and ResNetConfig.for_architecture("resnet50").hidden_size == 2048
    convs = {name for name, shape in expected if len(shape) == 4}
    assert "conv1.weight" in convs and set(backbone.prunable_weights()) == convs - {"conv1.weight"}


def test_config_round_trips_through_autoconfig_and_refuses_unknown_names(tiny_dir):
    config = AutoConfig.from_pretrained(tiny_dir)
    assert type(config) is ResNetConfig and config.model_type == "ticketlab-resnet"
    assert (config.block, config.layers, config.widths, config.in_channels, config.small_stem) == (
        "basic",
        [1, 1],
        [4, 8],
        1,
        True,
    )
    assert (config.queue_size, config.projection_dim, config.hidden_size) == (32, 8, 8)
    assert json.loads((tiny_dir / "config.json").read_text())["model_type"] == "ticketlab-resnet"
    with pytest.raises(
        TicketlabError, match="unknown architecture 'resnet19'; known: resnet18, resnet50, resnet-small"
    ) as error:
        ResNetConfig.for_architecture("resnet19")
    one_line(error)
    with pytest.raises(TicketlabError, match="unknown ResNet block 'wide'"):
        ResNetConfig(block="wide")
    with pytest.raises(TicketlabError, match="unknown contrastive method 'byol'"):
        ResNetConfig(contrastive="byol")


# --- import_resnet ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_resnet18():
    """torchvision's resnet18 for 1-channel images, with non-default BatchNorm statistics."""
    torch.manual_seed(1)
    model = resnet18(num_classes=10, in_channels=1)
    randomize_batchnorm(model)
    return model.eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_import_resnet_gives_the_plain_models_features(plain_resnet18, tmp_path, suffix):
    weights = tmp_path / f"resnet18{suffix}"
    plain_state = plain_resnet18.state_dict()
    if suffix == ".pth":
        torch.save(plain_state, weights)
    else:
        save_file({name: value.contiguous() for name, value in plain_state.items()}, weights)
    out = import_resnet(weights, "resnet18", tmp_path / "model", in_channels=1)
    assert out == tmp_path / "model" and {"config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    saved = load_file(out / "model.safetensors")
    backbone_state = {name: value for name, value in plain_state.items() if not name.startswith("fc.")}
    assert saved.keys() == backbone_state.keys()
    assert all(torch.equal(saved[name], value) for name, value in backbone_state.items())

    model = AutoModel.from_pretrained(out)
    assert type(model) is ResNetModel and model.config.in_channels == 1
    model.eval()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = resnet_features(plain_resnet18, plain_resnet18.stages, x)
        pooled = model(pixel_values=x).pooler_output
    assert pooled.shape == (2, 512) and torch.equal(pooled, expected)


def test_import_resnet_refuses_misfits_and_an_existing_folder(plain_resnet18, tmp_path):
    state = plain_resnet18.state_dict()
    one_channel = tmp_path / "one-channel.pth"
    torch.save(state, one_channel)
    with pytest.raises(
        TicketlabError, match=r"'conv1.weight' has shape \(64, 1, 7, 7\), the model expects \(64, 3, 7, 7\)"
    ) as error:
        import_resnet(one_channel, "resnet18", tmp_path / "a")  # the default: 3 channels
    one_line(error)
    missing = tmp_path / "missing.safetensors"
    save_file(
        {name: value.contiguous() for name, value in state.items() if name != "layer3.1.bn2.running_var"}, missing
    )
    with pytest.raises(TicketlabError, match=r"1 weight\(s\) missing, first 'layer3.1.bn2.running_var'") as error:
        import_resnet(missing, "resnet18", tmp_path / "b", in_channels=1)
    one_line(error)
    with pytest.raises(TicketlabError, match="no weight file at") as error:
        import_resnet(tmp_path / "nowhere.pth", "resnet18", tmp_path / "c", in_channels=1)
    one_line(error)
    assert not any((tmp_path / name).exists() for name in "abc")  # nothing written on a refusal

    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(TicketlabError, match="exists already") as error:
        import_resnet(one_channel, "resnet18", existing, in_channels=1)
    one_line(error)
    assert list(existing.iterdir()) == []


# --- the classifier ---------------------------------------------------------------------------------------------------


def test_classifier_from_a_backbone_folder(tiny_dir):
    model = AutoModelForImageClassification.from_pretrained(tiny_dir, num_labels=3)
    assert type(model) is ResNetForImageClassification
    saved = load_file(tiny_dir / "model.safetensors")
    backbone = model.resnet.state_dict()
    assert backbone.keys() == saved.keys() and all(torch.equal(backbone[name], value) for name, value in saved.items())
    assert tuple(model.fc.weight.shape) == (3, 8) and tuple(model.fc.bias.shape) == (3,)
    assert set(head_parameters(model)) == {"fc.weight", "fc.bias"}
    assert set(prunable_weights(model)) == TINY_RESNET_PRUNABLE == set(layer_stack_weights(model))

    # the fresh classifier is drawn from the seed: the same seed, the same fc; another seed, another
    first, again = (load_pretrained(tiny_dir, AutoModelForImageClassification, 5, num_labels=3) for _ in range(2))
    other = load_pretrained(tiny_dir, AutoModelForImageClassification, 6, num_labels=3)
    assert torch.equal(first.fc.weight, again.fc.weight) and not torch.equal(first.fc.weight, other.fc.weight)

    rebuilt = type(model)(model.config)  # how the controls draw fresh weights
    assert [(n, v.shape) for n, v in rebuilt.state_dict().items()] == [
        (n, v.shape) for n, v in model.state_dict().items()
    ]

    x = torch.rand(5, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 1, 0])
    output = model(pixel_values=x, labels=labels)
    assert output.logits.shape == (5, 3)
    assert torch.equal(output.loss, F.cross_entropy(output.logits, labels))
    assert model(pixel_values=x).loss is None


# --- SimCLR -----------------------------------------------------------------------------------------------------------


def test_simclr_loss_is_nt_xent_of_the_projected_views(tiny_dir):
    torch.manual_seed(0)
    model = ResNetForContrastiveLearning(
        ResNetConfig(**{**TINY_RESNET, "contrastive": "simclr", "loss_temperature": 0.3})
    )
    assert not hasattr(model, "momentum_resnet") and not hasattr(model, "queue")
    generator = torch.Generator().manual_seed(1)
    x1, x2 = torch.rand(6, 1, 12, 12, generator=generator), torch.rand(6, 1, 12, 12, generator=generator)
    model.train()
    output = model(pixel_values=x1, positive_values=x2)
    f1, f2 = model.resnet(x1).pooler_output, model.resnet(x2).pooler_output
    assert torch.equal(output.features, f1)
    assert torch.equal(output.loss, nt_xent(model.projection(f1), model.projection(f2), 0.3))
    output.loss.backward()
    assert model.resnet.layer1[0].conv1.weight.grad is not None and model.projection[0].weight.grad is not None

    model.eval()
    features_only = model(pixel_values=x1)
    assert features_only.loss is None and features_only.features.shape == (6, 8)
    assert torch.equal(features_only.features, model.resnet(x1).pooler_output)


# --- MoCo -------------------------------------------------------------------------------------------------------------


def moco_model(tiny_dir) -> ResNetForContrastiveLearning:
    """A MoCo model as IMP loads one (pre-trained backbone; head, momentum encoder and queue newly initialised)."""
    return load_pretrained(tiny_dir, ResNetForContrastiveLearning, 0, **MOCO)


def pair(seed: int, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 12, 12, generator=generator), torch.rand(n, 1, 12, 12, generator=generator)


def momentum_pairs(model):
    online = dict(model.resnet.named_parameters()) | {
        f"projection.{n}": p for n, p in model.projection.named_parameters()
    }
    momentum = model.momentum_resnet.state_dict() | {
        f"projection.{n}": p for n, p in model.momentum_projection.state_dict().items()
    }
    momentum = {name: momentum[name] for name in online}  # the momentum encoder holds them as buffers
    assert online.keys() == momentum.keys()
    return [(name, online[name], momentum[name]) for name in online]


def test_moco_first_training_step_copies_the_online_encoder_and_fills_the_queue(tiny_dir):
    model = moco_model(tiny_dir)
    assert model.queue.keys.shape == (32, 8) and int(model.queue.pointer) == 0
    assert not all(
        torch.equal(online, momentum) for _, online, momentum in momentum_pairs(model)
    )  # random before the first step
    model.train()
    x1, x2 = pair(0)
    queue_before = model.queue.keys.clone()
    output = model(pixel_values=x1, positive_values=x2)

    assert bool(model.momentum_started)
    for name, online, momentum in momentum_pairs(model):
        assert torch.equal(online, momentum), name
    with (
        torch.no_grad()
    ):  # the keys again, by hand: the momentum encoder (train mode, batch statistics) on the key view
        keys = model.momentum_projection(model.momentum_resnet(x2).pooler_output)
        queries = model.projection(model.resnet(x1).pooler_output)
    assert int(model.queue.pointer) == 4
    assert torch.equal(model.queue.keys[:4], F.normalize(keys, dim=1))
    assert torch.equal(model.queue.keys[4:], queue_before[4:])
    torch.testing.assert_close(output.loss, info_nce(queries, keys, queue_before, 0.2), rtol=0, atol=1e-6)

    # the momentum encoder has no parameters (its weights are buffers): nothing to train or to hand to an optimizer
    output.loss.backward()
    assert not [*model.momentum_resnet.parameters(), *model.momentum_projection.parameters()]
    assert model.resnet.layer2[0].conv2.weight.grad is not None and model.projection[2].weight.grad is not None

    # a batch that runs past the end of the queue wraps around
    for seed in range(1, 8):
        model(*pair(seed))
    assert int(model.queue.pointer) == (8 * 4) % 32 == 0


def test_moco_eval_forward_changes_neither_queue_nor_momentum_encoder(tiny_dir):
    model = moco_model(tiny_dir)
    model.train()
    model(*pair(0))  # start the momentum encoder
    model.eval()
    before = state(model)
    output = model(*pair(1))
    assert output.loss is not None and torch.isfinite(output.loss)
    after = model.state_dict()
    assert all(torch.equal(after[name], value) for name, value in before.items())


def test_moco_second_step_blends_the_momentum_encoder(tiny_dir):
    model = moco_model(tiny_dir)
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(*pair(0)).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    theta_k = model.momentum_resnet.layer2[0].conv2.weight.detach().clone()
    theta_q = model.resnet.layer2[0].conv2.weight.detach().clone()  # after the optimizer step
    assert (theta_q - theta_k).abs().max() > 1e-3  # the step moved the online encoder away from the copy
    model(*pair(1))
    blended = model.momentum_resnet.layer2[0].conv2.weight
    torch.testing.assert_close(blended, 0.9 * theta_k + 0.1 * theta_q)
    assert not torch.equal(blended, theta_q) and not torch.equal(blended, theta_k)
    # buffers (BatchNorm statistics) are copied before the key forward, which then counts its own batch
    assert (
        int(model.momentum_resnet.bn1.num_batches_tracked) == int(model.resnet.bn1.num_batches_tracked) + 1 == 7 + 2 + 1
    )  # loaded 7, two query batches, one key batch


def test_moco_heads_and_queue_are_outside_the_backbone(tiny_dir):
    model = moco_model(tiny_dir)
    head = set(head_parameters(model))
    assert "projection.0.weight" in head
    assert not any(name.startswith(("resnet.", "momentum_")) for name in head)
    assert {"momentum_projection.2.bias", "momentum_resnet.layer2.0.conv2.weight"} <= set(model.state_dict())
    assert set(prunable_weights(model)) == TINY_RESNET_PRUNABLE
    assert {"queue.keys", "queue.pointer", "momentum_started"} <= set(model.state_dict())
    torch.testing.assert_close(model.queue.keys.norm(dim=1), torch.ones(32))


def garbage_like(tensor, **options):
    """What torch.empty_like may hand back: memory that happens to be nonzero."""
    return torch.ones_like(tensor, **options)


def test_a_loaded_moco_model_copies_its_online_encoder_at_the_first_step(tiny_dir, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(torch, "empty_like", garbage_like)
        model = load_pretrained(tiny_dir, ResNetForContrastiveLearning, 0, **MOCO)
    assert not bool(model.momentum_started)
    model.train()
    model(*pair(0))
    assert all(torch.equal(online, momentum) for _, online, momentum in momentum_pairs(model))


def test_a_loaded_moco_models_momentum_encoder_is_frozen(tiny_dir):
    """Its weights are buffers, so loading (which materialises missing weights anew) cannot make them trainable."""
    model = load_pretrained(tiny_dir, ResNetForContrastiveLearning, 0, **MOCO)
    assert not [*model.momentum_resnet.parameters(), *model.momentum_projection.parameters()]
    assert all(
        name in dict(model.named_buffers()) for name in ("momentum_resnet.conv1.weight", "momentum_projection.0.weight")
    )


def test_a_built_moco_model_is_frozen_unstarted_and_copies_at_its_first_step():
    torch.manual_seed(0)
    model = ResNetForContrastiveLearning(ResNetConfig(**{**TINY_RESNET, **MOCO}))
    assert not bool(model.momentum_started)
    assert not [*model.momentum_resnet.parameters(), *model.momentum_projection.parameters()]
    model.train()
    model(*pair(0))
    assert bool(model.momentum_started)
    assert all(torch.equal(online, momentum) for _, online, momentum in momentum_pairs(model))
