"""GLUE: both data layouts give Hugging Face's examples, one training step per task, metrics, one-line errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import datasets
import numpy as np
import pyarrow.parquet
import pytest
import torch
from helpers import LAYOUTS, rows, write_glue
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ticketlab.config import TrainConfig
from ticketlab.errors import TicketlabError
from ticketlab.tasks.glue import GLUE_TASKS, glue_metrics
from ticketlab.train.evaluate import predict
from ticketlab.train.loop import train

TASKS = {task.name: task for task in GLUE_TASKS}


def write_export(root: Path, name: str, fmt: str) -> Path:
    """Hugging Face's export of the same rows in `root/name`, as `fmt`: saved (save_to_disk), parquet, jsonl, json,
    csv."""
    layout = LAYOUTS[name]
    label = datasets.ClassLabel(num_classes=len(layout.labels)) if layout.labels else datasets.Value("float32")
    strings = dict.fromkeys(layout.hf_texts, datasets.Value("string"))
    features = datasets.Features({**strings, "label": label, "idx": datasets.Value("int32")})
    splits = {}
    for split in ("train", *layout.dev):
        data = rows(name, split)
        columns = {c: [texts[i] for texts, _, _ in data] for i, c in enumerate(layout.hf_texts)}
        splits[split.replace("dev", "validation")] = {
            **columns,
            "label": [hf for *_, hf in data],
            "idx": list(range(len(data))),
        }
    splits["test"] = {**dict.fromkeys(layout.hf_texts, ["unlabelled"]), "label": [-1], "idx": [0]}
    export = datasets.DatasetDict(
        {k: datasets.Dataset.from_dict(data, features=features) for k, data in splits.items()}
    )
    folder = root / name
    if fmt == "saved":
        export.save_to_disk(folder)
        return folder
    folder.mkdir(parents=True)
    for split, dataset in export.items():
        if fmt == "parquet":
            shards = 2 if split == "train" else 1  # sharded as on the Hub
            for k in range(shards):
                dataset.shard(shards, k, contiguous=True).to_parquet(
                    folder / f"{split}-0000{k}-of-0000{shards}.parquet"
                )
        else:
            getattr(dataset, "to_csv" if fmt == "csv" else "to_json")(folder / f"{split}.{fmt}")
    return folder


@pytest.fixture(scope="module")
def glue_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("glue") / "glue_data"
    for name in TASKS:
        write_glue(root, name)
    return root


def test_the_nine_tasks_and_what_decides_matching():
    assert tuple(TASKS) == ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
    deciding = {"cola": "matthews_correlation", "stsb": "pearson"}
    for task in GLUE_TASKS:
        assert task.decider() == (task.eval_splits[0], deciding.get(task.name, "accuracy"))
        assert task.recipe_for(768) == TrainConfig(epochs=3, batch_size=32, learning_rate=2e-5, max_length=128)
    assert TASKS["mnli"].eval_splits == ("dev_matched", "dev_mismatched")
    assert TASKS["mrpc"].metrics == TASKS["qqp"].metrics == ("accuracy", "f1", "accuracy_and_f1")
    assert TASKS["stsb"].model_options() == {"num_labels": 1, "problem_type": "regression"}


@pytest.mark.parametrize(
    "name, fmt", list(zip(TASKS, ("saved", "parquet", "jsonl", "csv", "parquet", "saved", "jsonl", "csv", "json")))
)
def test_glue_files_and_hugging_face_export_give_the_same_examples(tmp_path, name, fmt):
    task = TASKS[name]
    from_tsv = task.splits(str(write_glue(tmp_path / "glue_data", name)))  # the task's folder
    write_export(tmp_path / "hub", name, fmt)
    from_export = task.splits(str(tmp_path / "hub"))  # the folder holding the task's folder
    expected = {split: [(texts, hf) for texts, _, hf in rows(name, split)] for split in ("train", *task.eval_splits)}
    assert from_tsv == from_export == expected


def test_callers_get_copies(glue_data):
    task = TASKS["rte"]
    task.splits(str(glue_data))["train"].clear()
    assert len(task.splits(str(glue_data))["train"]) == 16


@pytest.mark.parametrize("name", TASKS)
def test_load_train_predict_score(name, glue_data, tiny_model_dir):
    task = TASKS[name]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    splits = task.splits(str(glue_data))
    assert list(splits) == ["train", *task.eval_splits]
    features = {split: task.encode(tokenizer, examples, max_length=12) for split, examples in splits.items()}
    first = features["train"][0]
    assert len(first["input_ids"]) <= 12 and first["labels"] == splits["train"][0].label
    assert (1 in first["token_type_ids"]) == (name not in ("cola", "sst2"))  # a pair fills both segments
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, **task.model_options())
    config = TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3)
    result = train(model, features["train"][:8], task.collator(tokenizer, train=True), config)
    assert result.steps == 1 and math.isfinite(result.train_loss)
    for split in task.eval_splits:
        outputs = predict(model, features[split], task.collator(tokenizer, train=False), 4, task.outputs)
        assert outputs["predictions"].shape == (len(splits[split]),)
        assert outputs["labels"].tolist() == pytest.approx(
            [example.label for example in splits[split]]
        )  # feature order kept
        scores = task.score(splits[split], features[split], outputs)
        assert list(scores) == list(task.metrics)
        assert all(type(value) is float and math.isfinite(value) for value in scores.values())


def test_outputs_keep_classes_or_scores():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [5.0, 4.0]])
    outputs = TASKS["mrpc"].outputs(SimpleNamespace(logits=logits), {"labels": torch.tensor([0, 1, 1, 0])})
    assert outputs["predictions"].tolist() == [0, 1, 0, 0]
    scores = TASKS["mrpc"].score([], [], {k: v.numpy() for k, v in outputs.items()})
    assert scores == pytest.approx({"accuracy": 0.75, "f1": 2 / 3, "accuracy_and_f1": (0.75 + 2 / 3) / 2})
    logits, labels = torch.tensor([[0.5], [4.0]]), torch.tensor([1.0, 3.5])
    regression = TASKS["stsb"].outputs(SimpleNamespace(logits=logits), {"labels": labels})
    assert regression["predictions"].tolist() == [0.5, 4.0]


def test_metrics_by_hand():
    labels, predictions = np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])  # TP 1, FN 1, TN 2, FP 0
    scores = glue_metrics(("accuracy", "f1", "matthews_correlation"), labels, predictions)
    mcc = (1 * 2 - 0 * 1) / math.sqrt((1 + 0) * (1 + 1) * (2 + 0) * (2 + 1))  # (TP TN - FP FN) / sqrt of the four sums
    assert scores == pytest.approx({"accuracy": 0.75, "f1": 2 / 3, "matthews_correlation": mcc})
    pearson = 3 / math.sqrt(2 * 42 / 9)  # deviations (-1, 0, 1) and (-4/3, -1/3, 5/3)
    scores = glue_metrics(
        ("pearson", "spearmanr", "pearson_and_spearmanr"), np.array([1.0, 2, 3]), np.array([1, 2, 4.0])
    )
    assert scores == pytest.approx({"pearson": pearson, "spearmanr": 1.0, "pearson_and_spearmanr": (pearson + 1) / 2})


@pytest.mark.parametrize("seed", range(3))
def test_metrics_match_scikit_learn_and_scipy(seed):
    rng = np.random.default_rng(seed)
    labels, predictions = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    scores = glue_metrics(("accuracy", "f1", "accuracy_and_f1", "matthews_correlation"), labels, predictions)
    accuracy, f1 = accuracy_score(labels, predictions), f1_score(labels, predictions)
    assert scores == pytest.approx(
        {
            "accuracy": accuracy,
            "f1": f1,
            "accuracy_and_f1": (accuracy + f1) / 2,
            "matthews_correlation": matthews_corrcoef(labels, predictions),
        }
    )
    gold = rng.uniform(0, 5, 50)
    guess = gold + rng.normal(0, 2, 50)
    scores = glue_metrics(("pearson", "spearmanr"), gold, guess)
    assert scores == pytest.approx({"pearson": pearsonr(guess, gold)[0], "spearmanr": spearmanr(guess, gold)[0]})
    assert all(type(value) is float for value in scores.values())


def edit_line(path: Path, number: int, change: Callable[[str], str]) -> None:
    """Replace line `number` (from 1) of a text file by `change(line)`."""
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[number - 1] = change(lines[number - 1])
    path.write_text("\n".join(lines), encoding="utf-8")


def last_field(value: str) -> Callable[[str], str]:
    return lambda line: line.rpartition("\t")[0] + "\t" + value


def set_parquet_label(path: Path, row: int, value: int) -> None:
    table = pyarrow.parquet.read_table(path)
    labels = table["label"].to_pylist()
    labels[row] = value
    pyarrow.parquet.write_table(
        table.set_column(table.column_names.index("label"), "label", pyarrow.array(labels)), path
    )


def drop_split(folder: Path, split: str) -> None:
    saved = folder / "dataset_dict.json"
    saved.write_text(json.dumps({"splits": [s for s in json.loads(saved.read_text())["splits"] if s != split]}))


BAD_INPUT = {  # task, layout, corruption of the task's folder, the message
    "no folder": (
        "rte",
        "glue",
        shutil.rmtree,
        r"no GLUE rte training data in \S+/RTE: expected glue_data/RTE/\{train,dev\}\.tsv or",
    ),
    "no dev.tsv": (
        "rte",
        "glue",
        lambda d: (d / "dev.tsv").unlink(),
        r"RTE: no dev split among test, train; expected glue_data/RTE/\{train,dev\}\.tsv",
    ),
    "no mismatched dev": (
        "mnli",
        "glue",
        lambda d: (d / "dev_mismatched.tsv").unlink(),
        r"MNLI: no dev_mismatched split among dev_matched, test, train",
    ),
    "no column": (
        "rte",
        "glue",
        lambda d: edit_line(d / "dev.tsv", 1, lambda _: "index\tsentence1\tsentence2\tlbl"),
        r"RTE/dev\.tsv:2: no column 'label'; found: index, sentence1, sentence2, lbl",
    ),
    "bad label": (
        "rte",
        "glue",
        lambda d: edit_line(d / "dev.tsv", 3, last_field("maybe")),
        r"RTE/dev\.tsv:3: label 'maybe' in column 'label' is not one of entailment, not_entailment",
    ),
    "bad mnli label": (
        "mnli",
        "glue",
        lambda d: edit_line(d / "dev_matched.tsv", 2, last_field("-")),
        r"MNLI/dev_matched\.tsv:2: label '-' in column 'gold_label' is not one of entailment, neutral, contradiction",
    ),
    "empty split": (
        "sst2",
        "glue",
        lambda d: (d / "dev.tsv").write_text("sentence\tlabel\n"),
        r"SST-2/dev\.tsv: no rows in the dev split",
    ),
    "extra field": (
        "sst2",
        "glue",
        lambda d: edit_line(d / "train.tsv", 5, lambda line: line + "\t1"),
        r"SST-2/train\.tsv:5: 3 fields, expected 2",
    ),
    "missing field": (
        "cola",
        "glue",
        lambda d: edit_line(d / "dev.tsv", 2, lambda line: line.partition("\t")[2]),
        r"CoLA/dev\.tsv:2: 3 fields, expected 4",
    ),
    "bad score": (
        "stsb",
        "glue",
        lambda d: edit_line(d / "train.tsv", 4, last_field("high")),
        r"STS-B/train\.tsv:4: score 'high' in column 'score' is not a number",
    ),
    "bad json": (
        "qnli",
        "jsonl",
        lambda d: edit_line(d / "validation.jsonl", 2, lambda _: '{"question": "x",'),
        r"qnli/validation\.jsonl:2: bad JSON",
    ),
    "json without label": (
        "qnli",
        "jsonl",
        lambda d: edit_line(d / "validation.jsonl", 3, lambda _: '{"question": "q", "sentence": "s", "idx": 2}'),
        r"qnli/validation\.jsonl:3: no column 'label'; found: question, sentence, idx",
    ),
    "json null text": (
        "qnli",
        "jsonl",
        lambda d: edit_line(d / "train.jsonl", 4, lambda _: '{"question": "q", "sentence": null, "label": 0}'),
        r"qnli/train\.jsonl:4: column 'sentence' holds None, not text",
    ),
    "csv label": (
        "rte",
        "csv",
        lambda d: edit_line(d / "train.csv", 3, lambda line: line.rsplit(",", 2)[0] + ",2,1"),  # label 2, idx 1
        r"rte/train\.csv:3: label '2' in column 'label' is not one of 0, 1",
    ),
    "parquet label": (
        "sst2",
        "parquet",
        lambda d: set_parquet_label(d / "validation-00000-of-00001.parquet", 2, 7),
        r"sst2/validation-00000-of-00001\.parquet\[2\]: label 7 in column 'label' is not one of 0, 1",
    ),
    "saved without validation": (
        "mrpc",
        "saved",
        lambda d: drop_split(d, "validation"),
        r"mrpc: no validation split among test, train",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_a_one_line_error_naming_where(tmp_path, case):
    name, layout, corrupt, message = BAD_INPUT[case]
    folder = write_glue(tmp_path, name) if layout == "glue" else write_export(tmp_path, name, layout)
    corrupt(folder)
    with pytest.raises(TicketlabError, match=message) as error:
        TASKS[name].splits(str(folder))
    assert "\n" not in str(error.value)


def test_data_is_required():
    with pytest.raises(
        TicketlabError, match=r"GLUE data does not ship.*glue_data/MNLI/\{train,dev_matched,dev_mismatched\}\.tsv"
    ):
        TASKS["mnli"].splits(None)
