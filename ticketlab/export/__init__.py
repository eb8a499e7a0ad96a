"""A ticket as a model that ships: dense (zeros baked in), sparse kernels, INT8, ONNX (see formats.py)."""

from .formats import FORMATS, export_pruned, export_ticket, load_sparse

__all__ = ["FORMATS", "export_pruned", "export_ticket", "load_sparse"]
