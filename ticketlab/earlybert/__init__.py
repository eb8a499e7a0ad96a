"""EarlyBERT (Chen et al., ACL 2021): structured early-bird tickets. search.py finds them (slimming coefficients, the
early-bird test), draw.py draws heads and neurons, layers.py and compact.py cut them out of a model, hf.py gives the
smaller models their Hugging Face classes, and workflow.py runs it all as branches of a lottery run."""

from .compact import compact, structure_mask
from .draw import Structure
from .hf import COMPACT_MODEL_CLASSES, CompactBertConfig, load_compact, save_compact
from .layers import LayerModules, full_structure, layer_modules, layer_shapes
from .search import EarlyBirdSearch, ScaleHooks, scale_structures, slimming
from .workflow import EarlyBertResult, EarlyBirdConfig, earlybert

__all__ = [
    "COMPACT_MODEL_CLASSES",
    "CompactBertConfig",
    "EarlyBertResult",
    "EarlyBirdConfig",
    "EarlyBirdSearch",
    "LayerModules",
    "ScaleHooks",
    "Structure",
    "compact",
    "earlybert",
    "full_structure",
    "layer_modules",
    "layer_shapes",
    "load_compact",
    "save_compact",
    "scale_structures",
    "slimming",
    "structure_mask",
]
