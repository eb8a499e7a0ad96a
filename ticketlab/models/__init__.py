"""Model loading and the prunable-weight scope."""

from .text import (
    EMBEDDED_MODELS,
    backbone,
    head_parameters,
    hidden_size,
    layer_stack_weights,
    load_pretrained,
    load_tokenizer,
    model_fingerprint,
    prunable_weights,
    resolve_model,
)

__all__ = [
    "EMBEDDED_MODELS",
    "backbone",
    "head_parameters",
    "hidden_size",
    "layer_stack_weights",
    "load_pretrained",
    "load_tokenizer",
    "model_fingerprint",
    "prunable_weights",
    "resolve_model",
]
