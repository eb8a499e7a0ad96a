"""The nine GLUE tasks, read from the folders of GLUE's download script or from Hugging Face exports of `glue`."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from ..config import TrainConfig
from ..errors import TicketlabError
from .base import Task
from .metrics import METRICS
from .tables import Row, find_splits, read_table


def glue_metrics(names: tuple[str, ...], labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The metrics `names` (keys of METRICS, or "A_and_B" for a mean) of `predictions` against `labels`."""
    return {
        name: float(np.mean([METRICS[part](labels, predictions) for part in name.split("_and_")])) for name in names
    }


class Example(NamedTuple):
    texts: tuple[str, ...]  # a sentence or a pair
    label: int | float  # the class id of Hugging Face's glue, or the STS-B score


@dataclass(frozen=True)
class GlueTask(Task):
    """One GLUE task: its columns in either layout, its labels and its metrics."""

    name: str  # Hugging Face's config name
    folder: str  # the task's folder in glue_data
    description: str
    tsv_columns: tuple[str, ...]  # the text column(s) then the label column of the GLUE TSVs
    hf_columns: tuple[str, ...]  # the same in Hugging Face's export
    labels: tuple[str, ...]  # the label values of the TSVs in the order of Hugging Face's ids; () for a regression
    metrics: tuple[str, ...] = ("accuracy",)
    metric: str = "accuracy"
    eval_splits: tuple[str, ...] = ("dev",)
    header: tuple[str, ...] | None = None  # the column names of TSVs without a header line

    auto_class = AutoModelForSequenceClassification
    recipe = TrainConfig(epochs=3, batch_size=32, learning_rate=2e-5, max_length=128)  # BERT's paper and Chen et al.
    small_recipe = TrainConfig(epochs=3, batch_size=32, learning_rate=1e-4, max_length=128)

    @property
    def distillation(self) -> str:  # type: ignore[override]
        return "logits" if self.labels else "score"

    @property
    def num_labels(self) -> int:
        return len(self.labels) or 1

    @property
    def files(self) -> str:
        tsv = ",".join(("train", *self.eval_splits))
        return f"glue_data/{self.folder}/{{{tsv}}}.tsv or a Hugging Face export of glue/{self.name}"

    def model_options(self, data: str | None = None) -> dict[str, Any]:
        return super().model_options(data) if self.labels else {"num_labels": 1, "problem_type": "regression"}

    def splits(self, data: str | None) -> dict[str, list[Example]]:
        if data is None:
            raise TicketlabError(f"GLUE data does not ship with ticketlab: pass --data with {self.files}")
        return {
            name: list(examples) for name, examples in _read(self, Path(data)).items()
        }  # callers may cut their copy

    def encode(self, tokenizer, examples: list[Example], max_length: int) -> list[dict]:
        segments = [[example.texts[i] for example in examples] for i in range(len(self.tsv_columns) - 1)]
        encoded = tokenizer(*segments, truncation=True, max_length=max_length)
        return [
            {**{k: v[i] for k, v in encoded.items()}, "labels": example.label} for i, example in enumerate(examples)
        ]

    def outputs(self, output: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = output.logits.float()
        return {"predictions": logits.argmax(-1) if self.labels else logits[:, 0], "labels": batch["labels"]}

    def score(self, examples: list[Example], features: list[dict], outputs: dict[str, np.ndarray]) -> dict[str, float]:
        return glue_metrics(self.metrics, outputs["labels"], outputs["predictions"])

    def example(self, row: Row, tsv: bool) -> Example:
        """The example in a row of the TSVs (`tsv`) or of an export, or an error naming where the row is."""
        where, (*texts, label) = row
        columns = self.tsv_columns if tsv else self.hf_columns
        for column, text in zip(columns, texts):
            if not isinstance(text, str):
                raise TicketlabError(f"{where}: column {column!r} holds {text!r}, not text")
        if not self.labels:
            try:
                score = float(label)
            except (TypeError, ValueError):
                score = math.nan
            if not math.isfinite(score):
                raise TicketlabError(f"{where}: score {label!r} in column {columns[-1]!r} is not a number")
            return Example(tuple(texts), float(np.float32(score)))  # as Hugging Face stores it: both layouts agree
        names = self.labels if tsv else tuple(str(i) for i in range(len(self.labels)))
        if str(label) not in names:
            raise TicketlabError(f"{where}: label {label!r} in column {columns[-1]!r} is not one of {', '.join(names)}")
        return Example(tuple(texts), names.index(str(label)))


@functools.cache
def _read(task: GlueTask, path: Path) -> dict[str, list[Example]]:
    """Train and evaluation examples from `path`: glue_data, its task folder, or a Hugging Face export."""
    root = next((p for p in (path / task.folder, path / task.name) if p.is_dir()), path)
    found = find_splits(root) if root.is_dir() else {}
    if "train" not in found:
        raise TicketlabError(f"no GLUE {task.name} training data in {root}: expected {task.files}")
    tsv = found["train"][0].suffix == ".tsv"
    columns, header = (task.tsv_columns, task.header) if tsv else (task.hf_columns, None)
    splits = {}
    for split in ("train", *task.eval_splits):
        name = split if tsv else split.replace("dev", "validation")
        if name not in found:
            raise TicketlabError(f"{root}: no {name} split among {', '.join(sorted(found))}; expected {task.files}")
        rows = [row for part in found[name] for row in read_table(part, columns, header)]
        if not rows:
            raise TicketlabError(f"{', '.join(map(str, found[name]))}: no rows in the {name} split")
        splits[split] = [task.example(row, tsv) for row in rows]
    return splits


BINARY = ("0", "1")
ENTAILMENT = ("entailment", "not_entailment")
PAIR = ("sentence1", "sentence2")
ACCURACY_F1 = ("accuracy", "f1", "accuracy_and_f1")

GLUE_TASKS = (
    GlueTask(
        "cola",
        "CoLA",
        "CoLA: is an English sentence grammatical (8.6k train), Matthews correlation",
        ("sentence", "label"),
        ("sentence", "label"),
        BINARY,
        ("matthews_correlation",),
        "matthews_correlation",
        header=("source", "label", "annotation", "sentence"),
    ),
    GlueTask(
        "sst2",
        "SST-2",
        "SST-2: positive or negative movie-review sentence (67k train), accuracy",
        ("sentence", "label"),
        ("sentence", "label"),
        BINARY,
    ),
    GlueTask(
        "mrpc",
        "MRPC",
        "MRPC: are two news sentences paraphrases (3.7k train), accuracy and F1",
        ("#1 String", "#2 String", "Quality"),
        (*PAIR, "label"),
        BINARY,
        ACCURACY_F1,
    ),
    GlueTask(
        "stsb",
        "STS-B",
        "STS-B: similarity of two sentences from 0 to 5 (5.7k train), Pearson and Spearman correlation",
        (*PAIR, "score"),
        (*PAIR, "label"),
        (),
        ("pearson", "spearmanr", "pearson_and_spearmanr"),
        "pearson",
    ),
    GlueTask(
        "qqp",
        "QQP",
        "QQP: are two Quora questions duplicates (364k train), accuracy and F1",
        ("question1", "question2", "is_duplicate"),
        ("question1", "question2", "label"),
        BINARY,
        ACCURACY_F1,
    ),
    GlueTask(
        "mnli",
        "MNLI",
        "MNLI: does a premise entail, contradict or not bear on a hypothesis (393k train), accuracy",
        (*PAIR, "gold_label"),
        ("premise", "hypothesis", "label"),
        ("entailment", "neutral", "contradiction"),
        eval_splits=("dev_matched", "dev_mismatched"),
    ),
    GlueTask(
        "qnli",
        "QNLI",
        "QNLI: does a Wikipedia sentence answer a question (105k train), accuracy",
        ("question", "sentence", "label"),
        ("question", "sentence", "label"),
        ENTAILMENT,
    ),
    GlueTask(
        "rte",
        "RTE",
        "RTE: does a text entail a hypothesis (2.5k train), accuracy",
        (*PAIR, "label"),
        (*PAIR, "label"),
        ENTAILMENT,
    ),
    GlueTask(
        "wnli",
        "WNLI",
        "WNLI: does a sentence with a pronoun replaced follow from the original (635 train), accuracy",
        (*PAIR, "label"),
        (*PAIR, "label"),
        BINARY,
    ),
)
