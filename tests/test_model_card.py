"""Every export folder carries a model card: README.md with YAML front matter the Hugging Face Hub reads, the ticket's
provenance, what it keeps per matrix type, the metrics and latency measured at export and how to load it."""

import json

import pytest
import yaml

import ticketlab
from ticketlab.export import export_ticket
from ticketlab.export.card import _license
from ticketlab.models.matrices import type_counts


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = ticketlab.find(
        str(tiny_model_dir), sparsity=0.5, schedule="0.5", out=out, train_examples=32, batch_size=16, epochs=1
    )
    return result.path


def front_matter(folder):
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


@pytest.mark.parametrize("format", ["dense", "sparse"])
def test_an_export_has_a_model_card_the_hub_reads(trained_run, tiny_model_dir, tmp_path, format):
    folder = export_ticket(f"{trained_run}:1", tmp_path / f"ship-{format}", format=format, batch_size=1, length=8)
    record = json.loads((folder / "export.json").read_text())
    front, body = front_matter(folder)
    assert front["base_model"] == str(tiny_model_dir) and front["pipeline_tag"] == "text-classification"
    assert front["library_name"] == "transformers" and {"ticketlab", "lottery-ticket"} <= set(front["tags"])
    assert ("sparse" in front["tags"]) == (format == "sparse")
    (result,) = front["model-index"][0]["results"]
    assert result["dataset"] == {"name": "rotten-tomatoes", "type": "rotten-tomatoes", "split": "dev"}
    measured = record["dev"].get("exported", record["dev"]["masked dense"])
    assert result["metrics"] == [{"type": "accuracy", "value": round(measured["dev_accuracy"], 4)}]
    assert f"| config_hash | {record['ticket']['config_hash']} |" in body  # the provenance
    mask = ticketlab.load_ticket(f"{trained_run}:1")
    for kind, (matrices, kept, total) in type_counts(mask).items():
        assert f"| {kind} | {matrices} | {kept:,} of {total:,} |" in body
    loading = f'ticketlab.load_sparse("ship-{format}")' if format == "sparse" else 'from_pretrained("ship-dense")'
    assert loading in body
    assert f"The model's files: {record['bytes']['model']:,} bytes" in body
    assert ("## Latency measured at export" in body) == (format == "sparse")
    if format == "sparse":
        assert f"**{record['latency']['speedup']}x**" in body


def test_the_license_is_the_base_models_where_its_card_declares_one(tmp_path):
    assert _license("minilm-l6") == "apache-2.0"  # all-MiniLM-L6-v2's card
    assert _license("splade-tiny") is None  # no card: unknown, left out
    (tmp_path / "README.md").write_text("no front matter at all")
    assert _license(str(tmp_path)) is None
