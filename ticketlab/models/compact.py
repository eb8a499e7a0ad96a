"""Structured tickets made physical: whole attention heads and FFN neurons removed from a BERT-family model.

A structure holds, for every transformer layer i, "heads.{i}" (one bool per attention head) and "ffn.{i}"
(one bool per FFN intermediate neuron); True = kept. `compact` cuts the pruned rows and columns out of the weights,
so the smaller model computes exactly what the masked model (`scale_structures` with the structure as 0/1) does.

Compacted layers differ in width, which a plain BertConfig cannot say, so a compacted model gets a config subclass
("ticketlab-compact-bert", "-roberta", "-electra") recording each layer's heads and neurons, and a model class that
builds the dense architecture and then shrinks each layer to them. Both are registered with the Auto classes when
ticketlab is imported, so a saved folder loads with `load_compact` or `AutoModelFor...from_pretrained`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

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
from ..masks import Mask, ones_like
from ..pruning.structured import Structure
from .text import backbone, prunable_weights

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

LAYOUT = "encoder.layer[i].attention.self.{query,key,value}, .attention.output.dense, .intermediate.dense, .output.dense"
COMPACT_PREFIX = "ticketlab-compact-"


@dataclass(frozen=True)
class LayerModules:
    """The modules of one transformer layer that structured pruning touches."""

    attention: nn.Module  # the self-attention module: num_attention_heads, attention_head_size, all_head_size
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attention_output: nn.Linear  # its input is the heads' outputs side by side
    ffn_in: nn.Linear
    ffn_out: nn.Linear  # its input is the FFN neurons' activations
    head_size: int


def layer_modules(model: nn.Module) -> list[LayerModules]:
    """Per transformer layer, the modules structured pruning touches (BERT, RoBERTa, ELECTRA, MiniLM layouts)."""
    try:
        layers = backbone(model).encoder.layer
        found = [
            LayerModules(
                attention=layer.attention.self,
                query=layer.attention.self.query,
                key=layer.attention.self.key,
                value=layer.attention.self.value,
                attention_output=layer.attention.output.dense,
                ffn_in=layer.intermediate.dense,
                ffn_out=layer.output.dense,
                head_size=int(layer.attention.self.attention_head_size),
            )
            for layer in layers
        ]
    except (AttributeError, TypeError):
        found = []
    linear = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")
    if not found or not all(isinstance(getattr(m, name), nn.Linear) for m in found for name in linear):
        raise TicketlabError(f"{type(model).__name__}: structured pruning needs the BERT layer layout ({LAYOUT})")
    return found


def layer_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """(attention heads, FFN neurons) of each layer, as the weights are now (compacted layers differ)."""
    return [(m.query.out_features // m.head_size, m.ffn_in.out_features) for m in layer_modules(model)]


def full_structure(model: nn.Module) -> Structure:
    """The structure that keeps every head and every FFN neuron."""
    structure: Structure = {}
    for i, (heads, neurons) in enumerate(layer_shapes(model)):
        structure[f"heads.{i}"] = torch.ones(heads, dtype=torch.bool)
        structure[f"ffn.{i}"] = torch.ones(neurons, dtype=torch.bool)
    return structure


class ScaleHooks:
    """The forward pre-hooks `scale_structures` registered; `remove()` (or leaving a `with` block) takes them off."""

    def __init__(self, handles: list[torch.utils.hooks.RemovableHandle]):
        self.handles = handles

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self) -> ScaleHooks:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def scale_structures(model: nn.Module, scales: Mapping[str, torch.Tensor]) -> ScaleHooks:
    """Multiply each head's output and each FFN neuron's activation by its entry in `scales` (keyed like a
    structure, float, any subset of its keys) on every forward pass, until the returned hooks are removed.

    Scales may be trainable parameters: gradients flow into them. Each is cast to the activations' dtype, so this
    works under autocast and on half-precision models. With a structure as 0/1 scales, this is the masked model.
    """
    layers = layer_modules(model)
    _check_keys(model, scales, layer_shapes(model), "scales", complete=False)
    handles = []
    for name, scale in scales.items():
        if not scale.is_floating_point():
            raise TicketlabError(f"scales {name} is {scale.dtype}; scales are float tensors (a structure is scales.float())")
        kind, index = name.split(".")
        layer = layers[int(index)]
        if kind == "heads":
            handles.append(layer.attention_output.register_forward_pre_hook(_scale_heads_hook(scale, layer.head_size)))
        else:
            handles.append(layer.ffn_out.register_forward_pre_hook(_scale_neurons_hook(scale)))
    return ScaleHooks(handles)


def _scale_heads_hook(scale: torch.Tensor, head_size: int):
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        per_head = x.unflatten(-1, (scale.numel(), head_size)) * scale.to(x.device, x.dtype).unsqueeze(-1)
        return (per_head.flatten(-2), *args[1:])

    return hook


def _scale_neurons_hook(scale: torch.Tensor):
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        return (x * scale.to(x.device, x.dtype), *args[1:])

    return hook


def structure_mask(model: nn.Module, structure: Mapping[str, torch.Tensor]) -> Mask:
    """The unstructured mask, over `prunable_weights(model)`, that prunes what the structure prunes: the rows of
    Q, K, V and the attention-output columns of pruned heads, the FFN-in rows and FFN-out columns of pruned neurons.
    Every other weight (the pooler) is kept."""
    layers = layer_modules(model)
    _check_structure(model, structure)
    weights = prunable_weights(model)
    name_of = {id(w): name for name, w in weights.items()}
    mask = ones_like(weights)
    for i, layer in enumerate(layers):
        pruned_rows = ~structure[f"heads.{i}"].cpu().repeat_interleave(layer.head_size)
        for linear in (layer.query, layer.key, layer.value):
            mask[name_of[id(linear.weight)]][pruned_rows, :] = False
        mask[name_of[id(layer.attention_output.weight)]][:, pruned_rows] = False
        pruned_neurons = ~structure[f"ffn.{i}"].cpu()
        mask[name_of[id(layer.ffn_in.weight)]][pruned_neurons, :] = False
        mask[name_of[id(layer.ffn_out.weight)]][:, pruned_neurons] = False
    return mask


@torch.no_grad()
def compact(model: nn.Module, structure: Mapping[str, torch.Tensor], ffn_multiple_of: int = 1) -> nn.Module:
    """Remove the pruned heads and FFN neurons from `model`, in place, and return it.

    The smaller model computes what the masked model computes. Its config records each layer's shapes, and a BERT,
    RoBERTa or ELECTRA model of the four supported tasks (base, sequence classification, masked LM, question
    answering) becomes its compact class, so `save_compact` (or save_pretrained) writes a folder that loads back.
    `ffn_multiple_of` > 1 pads each layer's FFN with all-zero neurons up to a multiple of it: the outputs stay the
    same, and matrix kernels run faster on such widths (8 on AVX2 CPUs; see benchmarks/RESULTS.md).
    """
    if not isinstance(ffn_multiple_of, int) or ffn_multiple_of < 1:
        raise TicketlabError(f"ffn_multiple_of must be a positive integer, got {ffn_multiple_of!r}")
    layers = layer_modules(model)
    _check_structure(model, structure)
    for i, layer in enumerate(layers):
        heads = structure[f"heads.{i}"].cpu().nonzero().flatten()
        neurons = structure[f"ffn.{i}"].cpu().nonzero().flatten()
        _shrink_layer(layer, heads, neurons, ffn_padding=-len(neurons) % ffn_multiple_of)
    _record_shapes(model)
    return model


def _shrink_layer(layer: LayerModules, heads: torch.Tensor, neurons: torch.Tensor, ffn_padding: int = 0) -> None:
    """Keep only these heads (indices) and FFN neurons (indices) of one layer, then add `ffn_padding` zero neurons."""
    rows = (heads.unsqueeze(-1) * layer.head_size + torch.arange(layer.head_size)).flatten()
    for linear in (layer.query, layer.key, layer.value):
        _keep(linear, rows, dim=0)
    _keep(layer.attention_output, rows, dim=1)
    layer.attention.num_attention_heads = len(heads)
    layer.attention.all_head_size = len(rows)
    _keep(layer.ffn_in, neurons, dim=0, padding=ffn_padding)
    _keep(layer.ffn_out, neurons, dim=1, padding=ffn_padding)


def _keep(linear: nn.Linear, index: torch.Tensor, dim: int, padding: int = 0) -> None:
    """Keep the output rows (dim 0, with their biases) or input columns (dim 1) `index` of a Linear, in place,
    and append `padding` zero rows or columns."""
    weight = linear.weight
    index = index.to(weight.device)
    linear.weight = nn.Parameter(_pad(weight.detach().index_select(dim, index), dim, padding), requires_grad=weight.requires_grad)
    if dim == 0:
        if linear.bias is not None:
            bias = _pad(linear.bias.detach().index_select(0, index), 0, padding)
            linear.bias = nn.Parameter(bias, requires_grad=linear.bias.requires_grad)
        linear.out_features = len(index) + padding
    else:
        linear.in_features = len(index) + padding


def _pad(tensor: torch.Tensor, dim: int, padding: int) -> torch.Tensor:
    if not padding:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = padding
    return torch.cat([tensor, tensor.new_zeros(shape)], dim)


def _record_shapes(model: nn.Module) -> None:
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


def _check_structure(model: nn.Module, structure: Mapping[str, torch.Tensor]) -> None:
    _check_keys(model, structure, layer_shapes(model), "structure", complete=True)
    for name, kept in structure.items():
        if kept.dtype != torch.bool:
            raise TicketlabError(f"structure {name} is {kept.dtype}; a structure holds bool tensors (True = kept)")
        if not kept.any():
            what = "head" if name.startswith("heads.") else "FFN neuron"
            raise TicketlabError(f"structure prunes every {what} of layer {name.split('.')[1]}; each layer keeps at least one")


def _check_keys(model: nn.Module, tensors: Mapping[str, torch.Tensor], shapes: list[tuple[int, int]], what: str, complete: bool) -> None:
    """One-line errors for names that are no layer of the model, missing layers, or wrong lengths."""
    where = f"{what} does not fit this {type(model).__name__} ({len(shapes)} layers)"
    expected = {f"{kind}.{i}": size for i, (heads, neurons) in enumerate(shapes) for kind, size in (("heads", heads), ("ffn", neurons))}
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise TicketlabError(f"{where}: {extra[0]!r} is not heads.i or ffn.i of one of its layers")
    missing = sorted(set(expected) - set(tensors), key=lambda name: (int(name.split(".")[1]), name))
    if complete and missing:
        raise TicketlabError(f"{where}: no entry for {missing[0]} ({len(missing)} missing)")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != (expected[name],):
            unit = "heads" if name.startswith("heads.") else "FFN neurons"
            raise TicketlabError(f"{where}: {name} has shape {tuple(tensor.shape)}, layer {name.split('.')[1]} has {expected[name]} {unit}")


# --- Compact model classes: the dense architecture, each layer shrunk to the shapes its config records -------------


class _ShrinkOnInit:
    """Mixed in before a dense model class: build it, then cut each layer down to the config's recorded shapes
    (the first k heads and neurons; the real weights come from the checkpoint)."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        layers = layer_modules(self)
        recorded = (getattr(config, "layer_heads", None), getattr(config, "layer_intermediate_sizes", None))
        if any(value is None or len(value) != len(layers) for value in recorded):
            raise TicketlabError(f"{type(config).__name__} must record heads and FFN neurons for each of its {len(layers)} layers")
        if layers[0].head_size != getattr(config, "attention_head_size", None):
            raise TicketlabError(
                f"{type(config).__name__}: head size {config.attention_head_size} recorded, but hidden size / heads gives {layers[0].head_size}"
            )
        with torch.no_grad():
            for layer, heads, neurons in zip(layers, *recorded):
                _shrink_layer(layer, torch.arange(heads), torch.arange(neurons))


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
    "roberta": (RobertaConfig, (RobertaModel, RobertaForSequenceClassification, RobertaForMaskedLM, RobertaForQuestionAnswering)),
    "electra": (ElectraConfig, (ElectraModel, ElectraForSequenceClassification, ElectraForMaskedLM, ElectraForQuestionAnswering)),
}
_COMPACT_CONFIGS: dict[str, type[PreTrainedConfig]] = {}  # dense model type -> compact config class
_COMPACT_BY_DENSE: dict[type, type] = {}  # dense model class -> compact model class
_COMPACT_BY_NAME: dict[str, type] = {}  # compact model class name -> class (config.json's "architectures")


def _register_compact_classes() -> None:
    for family, (dense_config, dense_models) in _DENSE_FAMILIES.items():
        config = _COMPACT_CONFIGS[family] = _compact_config_class(dense_config)
        AutoConfig.register(config.model_type, config, exist_ok=True)
        for auto_class, dense in zip(_AUTO_CLASSES, dense_models):
            model = _COMPACT_BY_DENSE[dense] = _COMPACT_BY_NAME[f"Compact{dense.__name__}"] = _compact_model_class(dense, config)
            auto_class.register(config, model, exist_ok=True)


_register_compact_classes()
CompactBertConfig = _COMPACT_CONFIGS["bert"]
COMPACT_MODEL_CLASSES = tuple(_COMPACT_BY_NAME)


# --- Saving and loading --------------------------------------------------------------------------------------------


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
        raise TicketlabError("the model's layer shapes no longer match its config; compact it with compact(model, structure)")
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
        raise TicketlabError(f"{path} is not a compacted model folder (no config.json with model_type {COMPACT_PREFIX}...)")
    if auto_class is None:
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
        known = [name for name in architectures if name in _COMPACT_BY_NAME]
        if not known:
            raise TicketlabError(f"{path}: config.json names no compact model class ({', '.join(architectures) or 'none'}); pass auto_class")
        auto_class = _COMPACT_BY_NAME[known[0]]
    kwargs.setdefault("dtype", torch.float32)
    try:
        return auto_class.from_pretrained(path, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise TicketlabError(f"cannot load a compact model from {path}: {(str(error).strip().splitlines() or [type(error).__name__])[0]}") from None


def _compact_model_type(path: Path) -> str | None:
    """The folder's model type if it holds a compacted model, else None."""
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError, AttributeError):
        return None
    return model_type if isinstance(model_type, str) and model_type.startswith(COMPACT_PREFIX) else None
