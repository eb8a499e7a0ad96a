"""Hugging Face models (the text models, and ticketlab's ResNets): loading from an embedded name or a local folder,
and the prunable-weight scope."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
import transformers
from safetensors import SafetensorError
from torch import nn

from ..assets import asset_path
from ..catalog import EMBEDDED_MODELS
from ..errors import TicketlabError
from ..store.seal import MARKER, damage, describe

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# model types whose position ids start after the padding index (RoBERTa's scheme): the first pad_token_id + 1
# position embeddings are never an input's
OFFSET_POSITIONS = (
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "mpnet",
    "longformer",
    "data2vec-text",
    "roberta-prelayernorm",
    "xmod",
)

transformers.logging.set_verbosity_error()  # load_pretrained says what is newly initialised, in one line
log = logging.getLogger(__name__)
transformers.utils.logging.disable_progress_bar()


def resolve_model(name: str) -> Path:
    """The folder of an embedded model (splade-tiny, minilm-l6) or of a local Hugging Face model."""
    if name in EMBEDDED_MODELS:
        return asset_path(name)
    path = Path(name).expanduser()
    if not path.exists():
        raise TicketlabError(
            f"unknown model {name!r}: not an embedded model ({', '.join(EMBEDDED_MODELS)}) nor an existing folder"
        )
    if not (path / "config.json").is_file():
        raise TicketlabError(f"{path} is not a Hugging Face model folder (no config.json)")
    if (path / MARKER).is_file() and (problems := damage(path)):  # a folder ticketlab made (pretrain) says its digests
        raise TicketlabError(f"{path} is damaged: {describe(problems)}; run the command that made it again to redo it")
    return path


def model_reference(name: str) -> str:
    """How a run names its model: an embedded model by its name, a local folder by its absolute path (the same
    folder from any working folder, and on any node that shares it)."""
    return name if name in EMBEDDED_MODELS else str(Path(name).expanduser().resolve())


def model_fingerprint(path: Path) -> str:
    """A short hash of the model's config and weight files: a run is tied to the exact weights it started from."""
    digest = hashlib.sha256()
    files = [
        path / "config.json",
        *sorted(p for p in path.iterdir() if p.name in WEIGHT_FILES or p.name.endswith(".safetensors")),
    ]
    for file in files:
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def load_pretrained(path: Path, auto_class: type, seed: int, **kwargs) -> nn.Module:
    """Load pre-trained weights in fp32 (magnitude ranking wants full precision); newly initialised parts
    (task head, a missing pooler or MLM head) are drawn from `seed`, so θ0 is the same every time, and logged.
    A model with nothing to prune is refused."""
    torch.manual_seed(seed)
    try:
        model, info = auto_class.from_pretrained(path, dtype=torch.float32, output_loading_info=True, **kwargs)
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        raise TicketlabError(f"cannot load a model from {path}: {str(error).strip().splitlines()[0]}") from None
    prunable_weights(model)
    if info["missing_keys"]:
        output = model.get_output_embeddings()
        tied = output is not None and output.weight is model.get_input_embeddings().weight
        log.info(
            "not in the pre-trained weights, newly initialised from seed %d: %s%s",
            seed,
            ", ".join(sorted(info["missing_keys"])),
            " (decoder tied to the word embeddings)" if tied else "",
        )
    return model


def model_config(path: Path) -> transformers.PretrainedConfig:
    """The model's config; a one-line error when it cannot be read."""
    try:
        return transformers.AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as error:
        raise TicketlabError(f"cannot read the config of {path}: {str(error).strip().splitlines()[0]}") from None


def config_values(path: Path, *names: str) -> tuple:
    """Fields of the model's config (e.g. "hidden_size"); a one-line error when the config or a field is missing."""
    config = model_config(path)
    missing = [name for name in names if not hasattr(config, name)]
    if missing:
        raise TicketlabError(f"the config of {path} has no {missing[0]}")
    return tuple(getattr(config, name) for name in names)


def max_positions(path: Path) -> int | None:
    """The longest input the model's position embeddings take (None: it has none, as a ResNet)."""
    config = model_config(path)
    positions = getattr(config, "max_position_embeddings", None)
    return (
        positions - config.pad_token_id - 1
        if positions is not None and config.model_type in OFFSET_POSITIONS
        else positions
    )


def hidden_size(path: Path) -> int:
    """The model's width, which picks a task's recipe (the paper's for BERT-base and wider)."""
    return config_values(path, "hidden_size")[0]


def load_tokenizer(path: Path):
    try:
        return transformers.AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as error:
        raise TicketlabError(f"cannot load a tokenizer from {path}: {str(error).strip().splitlines()[0]}") from None


def backbone(model: nn.Module) -> nn.Module:
    """The pre-trained encoder without its task head (the model itself for a bare AutoModel)."""
    return getattr(model, "base_model", model)


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weight matrices IMP prunes, named relative to the backbone.

    A backbone that states its own scope (a `prunable_weights()` method, as ticketlab's ResNets do) gives it.
    A transformer's is found by structure: every nn.Linear weight of the backbone from its layer stack on (query, key,
    value,
    attention output, FFN in and out of every layer, then the pooler). Whatever comes before the layer stack
    (embeddings, ELECTRA's embedding projection), LayerNorm, biases and the task head are never pruned.
    """
    own_scope = getattr(backbone(model), "prunable_weights", None)
    if own_scope is not None:
        return own_scope()
    children = list(backbone(model).named_children())
    stack = _layer_stack_index(children)
    weights: dict[str, nn.Parameter] = {}
    for child_name, child in children[stack:]:
        for module_name, module in child.named_modules():
            if isinstance(module, nn.Linear):
                weights[".".join(filter(None, (child_name, module_name, "weight")))] = module.weight
    if not weights:
        raise TicketlabError(
            f"{type(model).__name__}: nothing to prune, no nn.Linear weight in or after its layer stack "
            "(ticketlab prunes BERT-style encoders and its ResNets)"
        )
    return weights


def layer_stack_weights(model: nn.Module) -> list[str]:
    """Names of the prunable weights a transferred ticket must cover: inside the transformer layers (every one but
    the pooler's), or all of them for a backbone with its own scope."""
    if hasattr(backbone(model), "prunable_weights"):
        return list(prunable_weights(model))
    children = list(backbone(model).named_children())
    stack = children[_layer_stack_index(children)][0]
    return [name for name in prunable_weights(model) if name.startswith(stack + ".")]


def head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters outside the backbone (the task head), by their full names."""
    inside = {id(p) for p in backbone(model).parameters()}
    return {name: p for name, p in model.named_parameters() if id(p) not in inside}


def _layer_stack_index(children: list[tuple[str, nn.Module]]) -> int:
    """Index of the child holding the largest nn.ModuleList: the transformer's layers."""
    best, best_size = None, 0
    for index, (_, child) in enumerate(children):
        for module in child.modules():
            if isinstance(module, nn.ModuleList):
                size = sum(p.numel() for p in module.parameters())
                if size > best_size:
                    best, best_size = index, size
    if best is None:
        raise TicketlabError(
            f"{type(children[0][1]).__name__ if children else 'model'}: no transformer layer stack found"
        )
    return best
