"""EarlyBERT (Chen et al., ACL 2021): structured early-bird tickets. search.py finds them (slimming coefficients, the
early-bird test), draw.py draws heads and neurons, layers.py and compact.py cut them out of a model, hf.py gives the
smaller models their Hugging Face classes, settings.py holds the search's settings, and workflow.py runs it all as
branches of a lottery run. Its names are imported on first use (PEP 562): the settings load without torch, for the
command's help."""

from __future__ import annotations

from ..lazy import export_lazily

_EXPORTS = {
    ".compact": ("compact", "structure_mask"),
    ".draw": ("Structure",),
    ".hf": ("COMPACT_MODEL_CLASSES", "CompactBertConfig", "load_compact", "save_compact"),
    ".layers": ("LayerModules", "full_structure", "layer_modules", "layer_shapes"),
    ".search": ("EarlyBirdSearch", "ScaleHooks", "scale_structures", "slimming"),
    ".settings": ("EarlyBirdConfig",),
    ".workflow": ("EarlyBertResult", "earlybert"),
}
export_lazily(__name__, _EXPORTS)
