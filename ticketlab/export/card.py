"""The model card of an export folder: README.md in the Hugging Face layout (YAML front matter the Hub reads: base
model, license, pipeline tag, tags, the dev metrics as a model-index), then the ticket's provenance, what it keeps per
matrix type, the metrics and latency measured at export, and how to load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import TicketlabError
from ..hardware import cpu_features, cpu_name
from ..masks import Mask, sparsity
from ..models import resolve_model
from ..models.matrices import type_counts
from ..tasks import TASKS

CARD = "README.md"
PIPELINE_TAGS = {  # a task's Auto class -> the Hub's pipeline tag for it
    "AutoModelForSequenceClassification": "text-classification",
    "AutoModelForQuestionAnswering": "question-answering",
    "AutoModelForMaskedLM": "fill-mask",
    "AutoModelForImageClassification": "image-classification",
}
LOADING = {  # an export format -> how a user loads it (default: ticketlab's call, which restores its kernels)
    "dense": "from transformers import AutoModel  # or the task's AutoModelFor... class\n"
    'model = AutoModel.from_pretrained("{folder}")',
    "onnx": 'import onnxruntime\nsession = onnxruntime.InferenceSession("{folder}/model.onnx")',
    "compressed": 'import ticketlab\nmodel = ticketlab.load_sparse("{folder}")  # the kept values, expanded at load',
    "compressed-int8": 'import ticketlab\nmodel = ticketlab.load_sparse("{folder}")  # INT8 values, expanded to fp32',
    "bf16": 'import ticketlab\nmodel = ticketlab.load_sparse("{folder}")  # in bf16, as it was timed',
}
LOAD_SPARSE = 'import ticketlab\nmodel = ticketlab.load_sparse("{folder}")  # the kernels chosen at export'


def write_card(folder: Path, record: Mapping[str, Any], mask: Mask, name: str) -> None:
    """Write the model card into `folder` (the export `name`, being written) from its export record
    (ticketlab.export.formats) and the ticket's `mask`."""
    ticket = record["ticket"]
    front = _front_matter(ticket, record)
    base = ticket.get("base_model", ticket.get("model", "the base model"))
    kind = f"a {sparsity(mask):.1%} sparse lottery ticket" if mask and sparsity(mask) > 0 else "the dense model"
    title = f"{Path(base).name}: {kind}" if mask else Path(base).name
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {title}",
        "",
        f"Exported by ticketlab as `{record['format']}`: {record['weights']}.",
        "",
        "## Provenance",
        "",
        "| field | value |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in ticket.items()),
        "",
    ]
    if mask:
        lines += ["## What the ticket keeps", "", "| matrix type | matrices | kept | sparsity |", "|---|---|---|---|"]
        lines += [
            f"| {kind} | {matrices} | {kept:,} of {total:,} | {1 - kept / total:.1%} |"
            for kind, (matrices, kept, total) in type_counts(mask).items()
        ]
        lines.append("")
    if record.get("dev"):
        lines += ["## Metrics measured at export", "", "| model | metric | value |", "|---|---|---|"]
        lines += [
            f"| {model} | {name} | {value:.4f} |"
            for model, values in record["dev"].items()
            for name, value in values.items()
        ]
        lines.append("")
    if record.get("latency"):
        latency, (batch, length) = record["latency"], record["tokens"]
        lines += [
            "## Latency measured at export",
            "",
            f"{batch} x {length} tokens, {record['threads']} threads: {latency['exported ms']} ms against "
            f"{latency['dense ms'][latency['fastest dense']]} ms for the fastest dense way to run the same model "
            f"({latency['fastest dense']}): **{latency['speedup']}x**, measured at export on {cpu_name()} "
            f"({', '.join(cpu_features()) or 'no vector features known'}); another CPU differs.",
            "",
        ]
    if record.get("bytes"):
        size = record["bytes"]
        lines += [
            "## Size on disk",
            "",
            f"The model's files: {size['model']:,} bytes, {size['model'] / size['dense']:.3f}x the dense weights' "
            f"{size['dense']:,}.",
            "",
        ]
    loading = LOADING.get(record["format"], LOAD_SPARSE).format(folder=name)
    lines += ["## How to load it", "", "```python", loading, "```", ""]
    (folder / CARD).write_text("\n".join(lines), encoding="utf-8")


def _front_matter(ticket: Mapping[str, str], record: Mapping[str, Any]) -> dict[str, Any]:
    """The card's metadata: what the Hub indexes."""
    front: dict[str, Any] = {}
    if "base_model" in ticket:
        front["base_model"] = ticket["base_model"]
        license = _license(ticket["base_model"])
        if license:
            front["license"] = license
    task = TASKS.get(ticket["task"]) if ticket.get("task") in TASKS else None
    tag = PIPELINE_TAGS.get(task.auto_class.__name__) if task else None
    if tag:
        front["pipeline_tag"] = tag
    front["library_name"] = "transformers"
    front["tags"] = ["ticketlab", "lottery-ticket", "pruned", *(["sparse"] if "sparse" in record["format"] else [])]
    metrics = record.get("dev", {}).get("exported") or record.get("dev", {}).get("masked dense")
    if task and metrics:
        split = task.eval_splits[0]
        front["model-index"] = [
            {
                "name": f"{Path(ticket['base_model']).name}-{ticket['task']}-ticket",
                "results": [
                    {
                        "task": {"type": tag or ticket["task"]},
                        "dataset": {"name": ticket["task"], "type": ticket["task"], "split": split},
                        "metrics": [
                            {"type": name.removeprefix(f"{split}_"), "value": round(float(value), 4)}
                            for name, value in metrics.items()
                        ],
                    }
                ],
            }
        ]
    return front


def _license(base_model: str) -> str | None:
    """The license the base model's own card declares, where it has one (None: unknown)."""
    try:
        text = (resolve_model(base_model) / CARD).read_text(encoding="utf-8")
        _, front, _ = text.split("---", 2)
        license = yaml.safe_load(front).get("license")
    except (OSError, ValueError, AttributeError, yaml.YAMLError, TicketlabError):
        return None
    return str(license) if license else None
