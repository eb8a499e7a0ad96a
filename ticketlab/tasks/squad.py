"""SQuAD v1.1 extractive question answering (Rajpurkar et al., 2016), encoded and scored as Hugging Face's run_qa.py
and the official v1.1 evaluation script do."""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding

from ..config import TrainConfig
from ..errors import TicketlabError
from .base import Collate, Task

FILES = {"train": "train-v1.1.json", "dev": "dev-v1.1.json"}
FOLDER = "a folder with the official train-v1.1.json and dev-v1.1.json"
LABELS = ("start_positions", "end_positions")
N_BEST = 20  # start and end candidates per window (run_qa's n_best_size)
MAX_ANSWER_TOKENS = 30  # run_qa's max_answer_length
NO_ANSWER = "empty"  # what run_qa answers when no span is valid


class Answer(NamedTuple):
    text: str
    answer_start: int  # character offset in the context


class Example(NamedTuple):
    id: str
    question: str
    context: str
    answers: tuple[Answer, ...]


class Squad(Task):
    name = "squad"
    description = (
        "SQuAD v1.1 extractive question answering on Wikipedia paragraphs (87,599 train, 10,570 dev), EM and F1"
    )
    files = FOLDER
    metrics = ("exact_match", "f1")
    metric = "f1"
    auto_class = AutoModelForQuestionAnswering
    distillation = "spans"
    recipe = TrainConfig(epochs=2, batch_size=16, learning_rate=3e-5, max_length=384)
    small_recipe = TrainConfig(epochs=2, batch_size=16, learning_rate=1e-4, max_length=384)
    doc_stride = 128  # context tokens shared by consecutive windows of a long context

    def splits(self, data: str | None) -> dict[str, list[Example]]:
        if data is None:
            raise TicketlabError(f"SQuAD does not ship with ticketlab: --data must be {FOLDER}")
        if not Path(data).is_dir():
            raise TicketlabError(f"{data} is not a folder: SQuAD needs {FOLDER}")
        return {split: read_squad(Path(data) / file) for split, file in FILES.items()}

    def encode(self, tokenizer, examples: list[Example], max_length: int) -> list[dict]:
        """One feature per window of `max_length` tokens: the question, then a stretch of the context.

        Features carry `example_index`, `offset_mapping` (character span of each context token, (-1, -1) for
        the others) and the token span of the first answer, or (0, 0) (CLS) when the window does not hold it."""
        if not tokenizer.is_fast:
            raise TicketlabError("SQuAD needs a fast tokenizer (for character offsets); this model's is not")
        encoded = tokenizer(
            [example.question for example in examples],
            [example.context for example in examples],
            truncation="only_second",
            max_length=max_length,
            stride=self._stride(tokenizer, examples, max_length),
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        features = []
        for i, example_index in enumerate(encoded.pop("overflow_to_sample_mapping")):
            offsets = np.array(encoded["offset_mapping"][i], dtype=np.int32)
            offsets[np.array(encoded.sequence_ids(i)) != 1] = -1
            inputs = {key: values[i] for key, values in encoded.items() if key != "offset_mapping"}
            labels = dict(zip(LABELS, _token_span(offsets, examples[example_index].answers[0])))
            features.append({**inputs, **labels, "example_index": example_index, "offset_mapping": offsets})
        return features

    def _stride(self, tokenizer, examples: list[Example], max_length: int) -> int:
        """The doc stride, shrunk to stay below the context room that the longest question leaves."""
        questions = tokenizer([example.question for example in examples], add_special_tokens=False)["input_ids"]
        lengths = [len(ids) for ids in questions]
        longest = int(np.argmax(lengths))
        room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - lengths[longest]
        if room < 1:
            raise TicketlabError(
                f"max_length {max_length} leaves no room for the context of question {examples[longest].id} "
                f"({lengths[longest]} tokens): raise --max-length"
            )
        return min(self.doc_stride, room - 1)

    def collator(self, tokenizer, train: bool) -> Collate:
        pad = DataCollatorWithPadding(tokenizer)
        keys = (*tokenizer.model_input_names, *LABELS)
        return lambda features: pad([{key: feature[key] for key in keys if key in feature} for feature in features])

    def outputs(self, output: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"start_logits": output.start_logits.float(), "end_logits": output.end_logits.float()}

    def score(self, examples: list[Example], features: list[dict], outputs: dict[str, np.ndarray]) -> dict[str, float]:
        predictions = best_answers(examples, features, outputs["start_logits"], outputs["end_logits"])
        return squad_metrics(predictions, [[answer.text for answer in example.answers] for example in examples])


def read_squad(path: Path) -> list[Example]:
    """The questions of an official SQuAD v1.1 JSON file, checked: every answer must sit at its answer_start."""
    if not path.is_file():
        raise TicketlabError(f"{path} not found: SQuAD needs {FOLDER}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TicketlabError(
            f"{path}: not valid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise TicketlabError(f"cannot read {path}: {error}") from None
    examples = []
    for i, article in enumerate(_field(path, raw, "data", list, "the top level")):
        for j, paragraph in enumerate(_field(path, article, "paragraphs", list, f"data[{i}]")):
            where = f"data[{i}].paragraphs[{j}]"
            context = _field(path, paragraph, "context", str, where)
            qas = _field(path, paragraph, "qas", list, where)
            examples += [_example(path, qa, context, f"{where}.qas[{k}]") for k, qa in enumerate(qas)]
    if not examples:
        raise TicketlabError(f"{path}: no questions")
    return examples


def _example(path: Path, qa: Any, context: str, where: str) -> Example:
    """One question of a paragraph, its answers checked against the context."""
    qid, question = _field(path, qa, "id", str, where), _field(path, qa, "question", str, where)
    answers = []
    for a, node in enumerate(_field(path, qa, "answers", list, where)):
        at = f"{where}.answers[{a}]"
        answer = Answer(_field(path, node, "text", str, at), _field(path, node, "answer_start", int, at))
        if not answer.text or context[answer.answer_start : answer.answer_start + len(answer.text)] != answer.text:
            place = f"{path}: {at}: question {qid}"
            raise TicketlabError(
                f"{place}: answer {answer.text!r} is not at character {answer.answer_start} of the context"
            )
        answers.append(answer)
    if not answers:
        raise TicketlabError(f"{path}: {where}: question {qid} has no answers")
    return Example(qid, question, context, tuple(answers))


def _field(path: Path, node: Any, key: str, kind: type, where: str) -> Any:
    """`node[key]`, which must be a `kind`; else an error naming the file and the place in it."""
    if not isinstance(node, dict) or key not in node:
        raise TicketlabError(f"{path}: {where}: no {key!r}")
    if not isinstance(node[key], kind):
        raise TicketlabError(f"{path}: {where}: {key!r} is {type(node[key]).__name__}, expected {kind.__name__}")
    return node[key]


def _token_span(offsets: np.ndarray, answer: Answer) -> tuple[int, int]:
    """First and last token of `answer` in a window, or (0, 0) when the window's context does not hold it whole."""
    start_char, end_char = answer.answer_start, answer.answer_start + len(answer.text)
    context = np.flatnonzero(offsets[:, 0] >= 0)
    starts, ends = offsets[context, 0], offsets[context, 1]
    if starts[0] > start_char or ends[-1] < end_char:
        return 0, 0
    return int(context[np.flatnonzero(starts <= start_char)[-1]]), int(context[np.flatnonzero(ends >= end_char)[0]])


def best_answers(
    examples: list[Example], features: list[dict], start_logits: np.ndarray, end_logits: np.ndarray
) -> list[str]:
    """Each example's answer as run_qa.py's `postprocess_qa_predictions` gives it for SQuAD v1.1: over its windows in
    order, the best valid pair of each window (see `_best_span`), the first of the highest start + end logit winning
    a tie; NO_ANSWER when no pair is valid (or the one valid pair is an empty string), as run_qa answers.

    Each window ranks its own tokens only: padding, whose logits depend on how a batch was padded, is never a candidate
    (run_qa pads every window to max_length and lets padding take n-best places, which it then drops)."""
    best: list[tuple[float, str] | None] = [None] * len(examples)
    valid = [0] * len(examples)
    for feature, starts, ends in zip(features, start_logits, end_logits):
        offsets, index = feature["offset_mapping"], feature["example_index"]
        count, score, start, end = _best_span(offsets, starts[: len(offsets)], ends[: len(offsets)])
        valid[index] += count
        if count and (best[index] is None or score > best[index][0]):
            best[index] = (score, examples[index].context[offsets[start, 0] : offsets[end, 1]])
    return [NO_ANSWER if top is None or (count == 1 and not top[1]) else top[1] for top, count in zip(best, valid)]


def _best_span(offsets: np.ndarray, start_logits: np.ndarray, end_logits: np.ndarray) -> tuple[int, float, int, int]:
    """(valid pairs, score, start, end) of a window's best answer: run_qa's N_BEST highest start and end logits over
    the window's tokens (its tie order: numpy's default argsort, reversed), the pairs whose start and end are context
    tokens with end >= start and at most MAX_ANSWER_TOKENS tokens, scored start + end logit (first in start-then-end
    order on a tie)."""
    starts, ends = (np.argsort(logits)[-1 : -N_BEST - 1 : -1] for logits in (start_logits, end_logits))
    context = offsets[:, 0] >= 0
    length = ends[None, :] - starts[:, None] + 1
    valid = context[starts][:, None] & context[ends][None, :] & (length >= 1) & (length <= MAX_ANSWER_TOKENS)
    scores = np.where(valid, start_logits[starts][:, None] + end_logits[ends][None, :], -np.inf)
    s, e = np.unravel_index(np.argmax(scores), scores.shape)
    return int(valid.sum()), float(scores[s, e]), int(starts[s]), int(ends[e])


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the official v1.1 script)."""
    text = "".join(char for char in text.lower() if char not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def exact_match_score(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1_score(prediction: str, truth: str) -> float:
    """Harmonic mean of precision and recall of the normalized tokens (counted with repeats)."""
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: list[str], truths: list[list[str]]) -> dict[str, float]:
    """Exact match and F1 in percent, each the best over an example's gold answers, averaged over examples."""
    return {
        name: 100.0 * float(np.mean([max(metric(p, t) for t in gold) for p, gold in zip(predictions, truths)]))
        for name, metric in (("exact_match", exact_match_score), ("f1", f1_score))
    }
