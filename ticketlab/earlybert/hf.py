"""Compact model classes: a compacted model's layers differ in width, which a plain BertConfig cannot say, so it gets a
config subclass ("ticketlab-compact-bert", "-roberta", "-electra") recording each layer's heads and neurons, and a
model class that builds the dense architecture and then shrinks each layer to them. Both are registered with the Auto
classes when ticketlab is imported, so a saved folder loads with `load_compact` or `AutoModelFor...from_pretrained`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertModel,
    ElectraConfig,
    ElectraForMaskedLM,
    ElectraForQuestionAnswering,
    ElectraForSequenceClassification,
    ElectraModel,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaModel,
)

from ..atomic import atomic_path
from ..errors import TicketlabError
from .layers import layer_modules, layer_shapes, shrink_layer

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

COMPACT_PREFIX = "ticketlab-compact-"


def record_shapes(model: nn.Module) -> None:
    """Give the model (and every submodule sharing its config) a config that records the per-layer shapes, and
    make a supported model its compact class. The old config object is copied, never changed: others may share it."""
    old = model.config
    compact_config = _COMPACT_CONFIGS.get(_family(old))
    config = copy.deepcopy(old)
    if compact_config is not None:
        config.__class__ = compact_config
    shapes = layer_shapes(model)
    config.layer_heads = [heads for heads, _ in shapes]
    config.layer_intermediate_sizes = [neurons for _, neurons in shapes]
    config.attention_head_size = layer_modules(model)[0].head_size
    for module in model.modules():
        if getattr(module, "config", None) is old:
            module.config = config
    compact_class = _COMPACT_BY_DENSE.get(type(model))
    if compact_class is not None:
        model.__class__ = compact_class


def _family(config: PreTrainedConfig) -> str:
    """The dense model type a config belongs to ("bert" for bert and ticketlab-compact-bert)."""
    return str(getattr(config, "model_type", "")).removeprefix(COMPACT_PREFIX)


class _ShrinkOnInit:
    """Mixed in before a dense model class: build it, then cut each layer down to the config's recorded shapes
    (the first k heads and neurons; the real weights come from the checkpoint)."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        layers = layer_modules(self)
        recorded = (getattr(config, "layer_heads", None), getattr(config, "layer_intermediate_sizes", None))
        if any(value is None or len(value) != len(layers) for value in recorded):
            raise TicketlabError(
                f"{type(config).__name__} must record heads and FFN neurons for each of its {len(layers)} layers"
            )
        if layers[0].head_size != getattr(config, "attention_head_size", None):
            raise TicketlabError(
                f"{type(config).__name__}: head size {config.attention_head_size} recorded, "
                f"but hidden size / heads gives {layers[0].head_size}"
            )
        with torch.no_grad():
            for layer, heads, neurons in zip(layers, *recorded):
                shrink_layer(layer, torch.arange(heads), torch.arange(neurons))


def _compact_config_class(dense: type[PreTrainedConfig]) -> type[PreTrainedConfig]:
    class CompactConfig(dense):
        model_type = COMPACT_PREFIX + dense.model_type
        layer_heads: list[int] | None = None  # attention heads kept in each layer
        layer_intermediate_sizes: list[int] | None = None  # FFN neurons kept in each layer
        attention_head_size: int | None = None  # hidden_size / num_attention_heads of the dense model

    CompactConfig.__name__ = CompactConfig.__qualname__ = f"Compact{dense.__name__}"
    return CompactConfig


def _compact_model_class(dense: type[nn.Module], config: type[PreTrainedConfig]) -> type[nn.Module]:
    name = f"Compact{dense.__name__}"
    return type(name, (_ShrinkOnInit, dense), {"config_class": config, "__module__": __name__, "__qualname__": name})


_AUTO_CLASSES = (AutoModel, AutoModelForSequenceClassification, AutoModelForMaskedLM, AutoModelForQuestionAnswering)

_DENSE_FAMILIES = {  # config class, then the model class for each of _AUTO_CLASSES
    "bert": (BertConfig, (BertModel, BertForSequenceClassification, BertForMaskedLM, BertForQuestionAnswering)),
    "roberta": (
        RobertaConfig,
        (RobertaModel, RobertaForSequenceClassification, RobertaForMaskedLM, RobertaForQuestionAnswering),
    ),
    "electra": (
        ElectraConfig,
        (ElectraModel, ElectraForSequenceClassification, ElectraForMaskedLM, ElectraForQuestionAnswering),
    ),
}

_COMPACT_CONFIGS: dict[str, type[PreTrainedConfig]] = {}  # dense model type -> compact config class

_COMPACT_BY_DENSE: dict[type, type] = {}  # dense model class -> compact model class

_COMPACT_BY_NAME: dict[str, type] = {}  # compact model class name -> class (config.json's "architectures")


def _register_compact_classes() -> None:
    for family, (dense_config, dense_models) in _DENSE_FAMILIES.items():
        config = _COMPACT_CONFIGS[family] = _compact_config_class(dense_config)
        AutoConfig.register(config.model_type, config, exist_ok=True)
        for auto_class, dense in zip(_AUTO_CLASSES, dense_models):
            model = _COMPACT_BY_DENSE[dense] = _COMPACT_BY_NAME[f"Compact{dense.__name__}"] = _compact_model_class(
                dense, config
            )
            auto_class.register(config, model, exist_ok=True)


_register_compact_classes()

CompactBertConfig = _COMPACT_CONFIGS["bert"]

COMPACT_MODEL_CLASSES = tuple(_COMPACT_BY_NAME)


def save_compact(model: nn.Module, path: str | Path, tokenizer=None) -> Path:
    """Write a compacted model (and the tokenizer, if given) as a Hugging Face folder, atomically; `load_compact`
    and `AutoModelFor...from_pretrained` read it back. A previous compact folder at `path` is replaced."""
    path = Path(path)
    if type(model) not in _COMPACT_BY_NAME.values():
        if type(model) in _COMPACT_BY_DENSE:
            raise TicketlabError(f"{type(model).__name__} is not compacted; call compact(model, structure) first")
        supported = ", ".join(dense.__name__ for dense in _COMPACT_BY_DENSE)
        raise TicketlabError(f"cannot save a compact {type(model).__name__}: the compact classes cover {supported}")
    config = model.config
    if layer_shapes(model) != list(zip(config.layer_heads, config.layer_intermediate_sizes)):
        raise TicketlabError(
            "the model's layer shapes no longer match its config; compact it with compact(model, structure)"
        )
    if path.exists() and _compact_model_type(path) is None:
        raise TicketlabError(f"{path} exists and is not a compacted model folder; choose a new folder")
    with atomic_path(path) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return path


def load_compact(path: str | Path, auto_class: type | None = None, **kwargs) -> nn.Module:
    """Load a folder `save_compact` wrote, as the class it was saved from unless `auto_class` says otherwise
    (e.g. AutoModel for the backbone only). Weights come in fp32 unless `dtype=` is passed."""
    path = Path(path)
    model_type = _compact_model_type(path)
    if model_type is None:
        raise TicketlabError(
            f"{path} is not a compacted model folder (no config.json with model_type {COMPACT_PREFIX}...)"
        )
    if auto_class is None:
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
        known = [name for name in architectures if name in _COMPACT_BY_NAME]
        if not known:
            raise TicketlabError(
                f"{path}: config.json names no compact model class ({', '.join(architectures) or 'none'}); "
                "pass auto_class"
            )
        auto_class = _COMPACT_BY_NAME[known[0]]
    kwargs.setdefault("dtype", torch.float32)
    try:
        return auto_class.from_pretrained(path, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise TicketlabError(
            f"cannot load a compact model from {path}: {(str(error).strip().splitlines() or [type(error).__name__])[0]}"
        ) from None


def is_compact_folder(path: Path) -> bool:
    """Whether the folder holds a compacted model (`save_compact`'s)."""
    return _compact_model_type(path) is not None


def _compact_model_type(path: Path) -> str | None:
    """The folder's model type if it holds a compacted model, else None."""
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError, AttributeError):
        return None
    return model_type if isinstance(model_type, str) and model_type.startswith(COMPACT_PREFIX) else None
