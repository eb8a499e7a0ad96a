"""`ticketlab export`: a ticket written as a model that ships, in one of FORMATS, and `load_sparse` to read it back.

Every export folder holds the model in the save_pretrained layout with the pruned weights zeroed (any Hugging Face
tool reads it as a dense model; `compressed`: the bitmask file of compressed.py in place of the weights), the
tokenizer, mask.safetensors, and export.json: the format, where the weights come from, the deployment shape, per
layer the kernel chosen and the time of every kernel tried (sparse formats), the whole model's latency against the
fastest dense way to run it (fp32, bf16 where native, INT8; formats in RACED and every format of a structured ticket,
text models: a compacted model races the full-size model it was cut from), the dev metrics measured
at export (trained weights) and the bytes of the file the model loads from beside the dense weights'; its marker,
written last, holds the SHA-256 of every file (trust.py). `load_sparse` checks them and rebuilds the same model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors import SafetensorError
from torch import nn

from ..atomic import atomic_path, write_json
from ..catalog import FORMATS
from ..earlybert.hf import is_compact_folder, load_compact
from ..errors import TicketlabError
from ..hardware import cpu_features, native_bf16
from ..masks import load_mask, save_mask
from ..models import load_tokenizer
from ..store.seal import seal
from .card import write_card
from .compressed import COMPRESSED, DENSE, compress_folder, load_compressed
from .kernels import INT8, available_kernels, bf16_kernels, quantize, torch_notices_silenced
from .latency import against_dense, dense_variants, text_inputs
from .onnx import write_onnx
from .source import Source, load_source
from .sparse import apply_plan, sparsify
from .trust import RECORD, check_export

SPARSE = ("sparse", "sparse-int8", "sparse-bf16")
QUANTIZED = ("int8", "sparse-int8")
NATIVE_BF16 = ("bf16", "sparse-bf16")  # formats only a CPU with native bf16 runs well
RACED = ("sparse", "int8", "bf16", "sparse-int8", "sparse-bf16")  # made to run faster: a text model's races dense
COMPRESSED_FORMATS = ("compressed", "compressed-int8")
MODEL_FILES = {  # where not DENSE alone
    "onnx": ("model.onnx", "model.onnx.data"),
    **{format: (COMPRESSED,) for format in COMPRESSED_FORMATS},
}


def export_ticket(
    ticket: str | Path,
    out: str | Path,
    format: str = "dense",
    model: str | None = None,
    batch_size: int = 1,
    length: int = 128,
) -> Path:
    """Write the model `ticket` makes (ticketlab.export.source) to the new folder `out` in `format`; sparse formats
    choose each layer's kernel by timing it on batch_size x length tokens."""
    out = Path(out)
    if format not in FORMATS:
        raise TicketlabError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
    if out.exists():
        raise TicketlabError(f"{out} exists already; choose a new folder")
    if batch_size < 1 or length < 1:
        raise TicketlabError(f"batch size and length must be at least 1, got {batch_size} and {length}")
    if format in NATIVE_BF16 and not native_bf16("cpu"):
        features = ", ".join(cpu_features()) or "no vector features known"
        raise TicketlabError(f"{format} needs a CPU with native bf16 (AMX-BF16 or AVX512-BF16), not {features}")
    source = load_source(ticket, model)
    record: dict[str, Any] = {
        "format": format,
        "weights": source.weights,
        "ticket": source.metadata,
        "tokens": [batch_size, length],
        "threads": torch.get_num_threads(),
    }
    vocab_size = getattr(getattr(source.model, "config", None), "vocab_size", None)
    with atomic_path(out) as tmp:
        _write_model(source, tmp)
        dense_bytes = (tmp / DENSE).stat().st_size
        if source.evaluate is not None:
            record["dev"] = {"masked dense": source.evaluate(source.model)}
        full_size = source.model if source.reference is None else source.reference
        raced = vocab_size and (format in RACED or full_size is not source.model)
        dense = dense_variants(full_size) if raced else None  # before any conversion
        shipped = _convert(source.model, source.mask, format, batch_size * length, record, tmp)
        if dense is not None:
            record["latency"] = against_dense(shipped, dense, text_inputs(vocab_size, batch_size, length))
        if source.evaluate is not None and format != "dense":
            record["dev"]["exported"] = source.evaluate(shipped)
        if format == "onnx":
            with torch_notices_silenced():
                record["onnx_max_abs_error"] = write_onnx(shipped, tmp / "model.onnx")
        record["bytes"] = {"model": _model_bytes(tmp, format), "dense": dense_bytes}
        write_card(tmp, record, source.mask, out.name)
        write_json(tmp / RECORD, record)
        seal(tmp, {"made_by": "export"})
    return out


def export_pruned(ticket: str | Path, model: str | None, out: str | Path) -> Path:
    """Write `model`'s pre-trained backbone with the ticket applied to the new folder `out` (`ticketlab apply`):
    the save_pretrained layout, the tokenizer (a text model's) and mask.safetensors. Parts the checkpoint lacks
    (splade-tiny's pooler) are newly initialised from the ticket's seed."""
    out = Path(out)
    if out.exists():
        raise TicketlabError(f"{out} exists already; choose a new folder")
    source = load_source(ticket, model, trained=False)
    with atomic_path(out) as tmp:
        _write_model(source, tmp)
        seal(tmp, {"made_by": "apply"})
    return out


def load_sparse(folder: str | Path) -> nn.Module:
    """The model an export folder holds, running as it was exported (kernels, INT8), in eval mode. A damaged folder,
    an unknown format or kernel is refused in one line; one without a marker loads with a warning (check_export)."""
    folder = Path(folder)
    check_export(folder)
    try:
        record = json.loads((folder / RECORD).read_text())
        format = record["format"]
        if format not in FORMATS:
            raise TicketlabError(f"{folder / RECORD} names an unknown format {format!r}; known: {', '.join(FORMATS)}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TicketlabError(f"{folder} is not a ticketlab export folder ({RECORD}: {error})") from None
    model = _load_model(folder)
    mask = load_mask(folder / "mask.safetensors")[0] if (folder / "mask.safetensors").is_file() else {}
    if format in SPARSE:
        apply_plan(model, mask, record.get("kernels", {}), kernels_for(format))
    if format in QUANTIZED:
        quantize(model)
    if format == "bf16":
        model.to(torch.bfloat16)
    return model.eval()


def _convert(model: nn.Module, mask, format: str, tokens: int, record: dict[str, Any], folder: Path) -> nn.Module:
    """The model in `format`, with what the conversion measured added to `record` (`compressed`: the model read
    back from the file that replaces the dense one in `folder`)."""
    if format in COMPRESSED_FORMATS:
        compress_folder(folder, model, mask, int8=format == "compressed-int8")
        return _load_model(folder).eval()
    if format in SPARSE:
        record["kernels"] = sparsify(model, mask, tokens, kernels_for(format))
    if format in QUANTIZED:
        quantize(model)
    if format == "bf16":
        model.to(torch.bfloat16).save_pretrained(folder)  # the weights file in bf16: half the bytes
    return model


def kernels_for(format: str) -> dict:
    """The kernels a sparse format may choose from: exact ones for `sparse`, INT8 in place of dense for `sparse-int8`,
    and for `sparse-bf16` the bf16 kernels besides, bf16 dense in place of dense (where the CPU runs bf16)."""
    kernels = available_kernels()
    replacements = {"sparse-int8": {INT8.name: INT8}, "sparse-bf16": bf16_kernels()}.get(format)
    if replacements:
        kernels.pop("dense")
        kernels.update(replacements)
    return kernels


def _write_model(source: Source, folder: Path) -> None:
    source.model.save_pretrained(folder)
    if source.processor is not None:
        load_tokenizer(source.processor).save_pretrained(folder)
    if source.mask:
        save_mask(folder / "mask.safetensors", source.mask, source.metadata)


def _model_bytes(folder: Path, format: str) -> int:
    """The bytes of the files the model of a `format` export loads from (ONNX: its graph and external data)."""
    files = [folder / name for name in MODEL_FILES.get(format, (DENSE,))]
    return sum(file.stat().st_size for file in files if file.is_file())


def _load_model(folder: Path) -> nn.Module:
    if is_compact_folder(folder):
        return load_compact(folder)
    try:
        architecture = json.loads((folder / "config.json").read_text())["architectures"][0]
        model_class = getattr(transformers, architecture)
        if (folder / COMPRESSED).is_file():
            return load_compressed(folder, model_class)
        return model_class.from_pretrained(folder, dtype=torch.float32)
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, SafetensorError) as error:
        raise TicketlabError(f"cannot load the model in {folder}: {str(error).strip().splitlines()[0]}") from None
