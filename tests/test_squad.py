"""SQuAD v1.1: reading the official files, windows and labels, span post-processing, the official metric."""

from __future__ import annotations

import copy
import functools
import operator
import re
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import CAFE, DEV, LONG, TESLA, write_squad
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from ticketlab.config import TrainConfig
from ticketlab.errors import TicketlabError
from ticketlab.tasks.squad import (
    Answer,
    Squad,
    best_answers,
    exact_match_score,
    f1_score,
    normalize_answer,
    read_squad,
    squad_metrics,
)
from ticketlab.train.evaluate import predict
from ticketlab.train.loop import train

MAX_LENGTH, STRIDE = 64, 16


@pytest.fixture(scope="module")
def task():
    squad = Squad()
    squad.doc_stride = STRIDE
    return squad


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def splits(task, tmp_path_factory):
    return task.splits(str(write_squad(tmp_path_factory.mktemp("squad"))))


@pytest.fixture(scope="module")
def features(task, tokenizer, splits):
    return {name: task.encode(tokenizer, examples, MAX_LENGTH) for name, examples in splits.items()}


def raises_one_line(message):
    return pytest.raises(TicketlabError, match=f"^{re.escape(message)}$")


def windows(features, examples, qid):
    return [(i, f) for i, f in enumerate(features) if examples[f["example_index"]].id == qid]


def context_offsets(feature):
    return feature["offset_mapping"][feature["offset_mapping"][:, 0] >= 0]


def span_text(example, feature, start, end):
    return example.context[feature["offset_mapping"][start, 0] : feature["offset_mapping"][end, 1]]


def around_answer(features, examples, qid):
    """Windows of question `qid` holding the start of its first answer but not its end, and those holding it whole."""
    answer = next(e for e in examples if e.id == qid).answers[0]
    start, end = answer.answer_start, answer.answer_start + len(answer.text)
    crossing, whole = [], []
    for i, f in windows(features, examples, qid):
        low, high = context_offsets(f)[0, 0], context_offsets(f)[-1, 1]
        if low <= start < high < end:
            crossing.append((i, f))
        elif low <= start and end <= high:
            whole.append((i, f))
    return crossing, whole


def token_span(feature, context, text):
    """Token indices of the first `text` of `context` in a window that holds it whole."""
    start_char = context.index(text)
    starts, ends = feature["offset_mapping"].T.tolist()
    return starts.index(start_char), ends.index(start_char + len(text))


def test_splits_keep_every_question_and_its_answers(splits):
    train, dev = splits["train"], splits["dev"]
    assert [e.id for e in train] == ["c1", "c2", "u1", "u2", "u3", "l1", "l2"]
    assert [e.id for e in dev] == ["t1", "d1", "d2", "d3"]
    assert train[4].question == "Which sign means a party?" and train[4].context == CAFE
    assert train[4].answers == (Answer("🎉", CAFE.index("🎉")),)
    assert [a.text for a in dev[0].answers] == ["Smiljan", "Smiljan, in the Austrian Empire", "Austrian Empire"]


def test_training_labels_cover_exactly_the_first_answer(splits, features):
    for example_index, example in enumerate(splits["train"]):
        own = [f for f in features["train"] if f["example_index"] == example_index]
        labelled = [f for f in own if f["start_positions"] > 0]
        assert labelled, example.id
        for f in labelled:
            assert span_text(example, f, f["start_positions"], f["end_positions"]) == example.answers[0].text
        assert all(f["end_positions"] == 0 for f in own if f["start_positions"] == 0)


def test_long_contexts_make_overlapping_windows_and_only_context_tokens_keep_offsets(splits, features):
    long_windows = [f for _, f in windows(features["train"], splits["train"], "l1")]
    assert len(long_windows) >= 3 and all(len(f["input_ids"]) <= MAX_LENGTH for f in long_windows)
    for f in long_windows:
        is_context = np.array(f["token_type_ids"]) == 1
        is_context[-1] = False  # the closing [SEP]
        assert (f["offset_mapping"][~is_context] == -1).all() and (f["offset_mapping"][is_context] >= 0).all()
    for previous, current in zip(long_windows, long_windows[1:]):
        assert (context_offsets(current)[:STRIDE] == context_offsets(previous)[-STRIDE:]).all()


def test_an_answer_across_a_window_boundary_is_labelled_in_the_window_holding_it_whole(splits, features):
    [(_, crossing)], [(_, whole)] = around_answer(
        features["train"], splits["train"], "l1"
    )  # the fixture crosses a boundary
    assert (crossing["start_positions"], crossing["end_positions"]) == (0, 0)
    assert (
        span_text(splits["train"][5], whole, whole["start_positions"], whole["end_positions"])
        == "golden bridge of kyoto"
    )


def test_the_stride_shrinks_to_fit_a_small_max_length_and_too_long_questions_are_refused(tokenizer, splits):
    squad = Squad()  # stride 128: more than a window of 24 tokens holds
    features = squad.encode(tokenizer, splits["train"], 24)
    assert all(len(f["input_ids"]) <= 24 for f in features)
    long_windows = [f for _, f in windows(features, splits["train"], "l1")]
    assert len(long_windows) > 3
    for previous, current in zip(
        long_windows, long_windows[1:]
    ):  # the longest question (8 tokens) leaves 13: stride 12
        assert (context_offsets(current)[:12] == context_offsets(previous)[-12:]).all()
    with raises_one_line("max_length 10 leaves no room for the context of question c2 (8 tokens): raise --max-length"):
        squad.encode(tokenizer, splits["train"], 10)


def test_a_slow_tokenizer_is_refused(splits):
    with raises_one_line("SQuAD needs a fast tokenizer (for character offsets); this model's is not"):
        Squad().encode(SimpleNamespace(is_fast=False), splits["train"], MAX_LENGTH)


def test_the_collator_pads_model_inputs_and_labels_only(task, tokenizer, features):
    some = features["train"][:5]
    batch = task.collator(tokenizer, train=True)(some)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"}
    assert batch["input_ids"].shape == (5, max(len(f["input_ids"]) for f in some))
    assert batch["start_positions"].tolist() == [f["start_positions"] for f in some]


def hand_logits(features, spans, base=0.0):
    """Start and end logits: `base`, but `logit` at the ends of each (start, end, logit) of spans[feature];
    rows are padded past each feature's length, as `predict` pads them, with logits that must be ignored."""
    width = max(len(f["input_ids"]) for f in features) + 3
    start, end = np.full((len(features), width), 99.0), np.full((len(features), width), 99.0)
    for i, f in enumerate(features):
        start[i, : len(f["input_ids"])] = end[i, : len(f["input_ids"])] = base
        for s, e, logit in spans.get(i, ()):
            start[i, s], end[i, e] = logit, logit
    return start, end


def test_the_best_span_gives_the_answer_text_unicode_included(splits, features):
    dev, feats = splits["dev"], features["dev"]
    [(t1, tesla)] = windows(feats, dev, "t1")
    [(d1, cafe)] = windows(feats, dev, "d1")
    spans = {
        t1: [(*token_span(tesla, TESLA, "Smiljan, in the Austrian"), 5.0)],
        d1: [(*token_span(cafe, CAFE, "Café de Flore à"), 5.0)],
    }
    assert best_answers(dev, feats, *hand_logits(feats, spans))[:2] == ["Smiljan, in the Austrian", "Café de Flore à"]


@pytest.mark.parametrize(
    "partial, whole, expected", [(4.0, 6.0, "golden bridge of kyoto"), (6.0, 4.0, "golden bridge")]
)
def test_the_best_span_over_all_windows_wins(splits, features, partial, whole, expected):
    dev, feats = splits["dev"], features["dev"]
    [(i, crossing)], [(j, holding)] = around_answer(feats, dev, "d2")
    spans = {
        i: [(*token_span(crossing, LONG, "golden bridge"), partial)],
        j: [(*token_span(holding, LONG, "golden bridge of kyoto"), whole)],
    }
    assert best_answers(dev, feats, *hand_logits(feats, spans))[2] == expected


@pytest.mark.parametrize(
    "trap",
    [
        lambda context: (1, 2),  # question tokens: outside the context
        lambda context: (context[20], context[1]),  # ends before it starts
        lambda context: (context[20], context[50]),  # 31 tokens: longer than 30
    ],
    ids=["outside-context", "end-before-start", "too-long"],
)
def test_invalid_spans_are_never_chosen(splits, features, trap):
    dev, feats = splits["dev"], features["dev"]
    i, window = windows(feats, dev, "d3")[0]
    context = np.flatnonzero(window["offset_mapping"][:, 0] >= 0)
    assert len(context) > 50
    spans = {i: [(context[2], context[4], 12.0), (*trap(context), 30.0)]}  # the valid span scores 24, the trap 60
    predictions = best_answers(dev, feats, *hand_logits(feats, spans, base=-10.0))
    assert predictions[3] == span_text(dev[3], window, context[2], context[4])


def run_qa_answers(examples, features, all_start_logits, all_end_logits, n_best_size=20, max_answer_length=30):
    """run_qa.py's `postprocess_qa_predictions` (utils_qa.py, SQuAD v1.1: no null answer), transcribed: the
    reference `best_answers` must agree with. Offsets of non-context tokens are None there, -1 here."""
    windows_of = {}
    for feature_index, feature in enumerate(features):
        windows_of.setdefault(feature["example_index"], []).append(feature_index)
    answers = []
    for example_index, example in enumerate(examples):
        prelim_predictions = []
        for feature_index in windows_of.get(example_index, []):
            start_logits, end_logits = all_start_logits[feature_index], all_end_logits[feature_index]
            offset_mapping = [None if o[0] < 0 else tuple(o) for o in features[feature_index]["offset_mapping"]]
            start_indexes = np.argsort(start_logits)[-1 : -n_best_size - 1 : -1].tolist()
            end_indexes = np.argsort(end_logits)[-1 : -n_best_size - 1 : -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if (
                        start_index >= len(offset_mapping)
                        or end_index >= len(offset_mapping)
                        or offset_mapping[start_index] is None
                        or offset_mapping[end_index] is None
                    ):
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    prelim_predictions.append(
                        {
                            "offsets": (offset_mapping[start_index][0], offset_mapping[end_index][1]),
                            "score": start_logits[start_index] + end_logits[end_index],
                        }
                    )
        predictions = sorted(prelim_predictions, key=lambda x: x["score"], reverse=True)[:n_best_size]
        texts = [example.context[p["offsets"][0] : p["offsets"][1]] for p in predictions]
        if len(texts) == 0 or (len(texts) == 1 and texts[0] == ""):
            texts.insert(0, "empty")
        answers.append(texts[0])
    return answers


def random_windows(rng, examples_count=60):
    """Examples of 1-3 overlapping windows: question and special tokens (offset -1), then context words (one of
    them sometimes zero-width), then a separator."""
    examples, features = [], []
    for index in range(examples_count):
        words = [f"w{index}x{k}" for k in range(int(rng.integers(5, 80)))]
        context = " ".join(words)
        ends = np.cumsum([len(w) + 1 for w in words]) - 1
        spans = np.stack([ends - [len(w) for w in words], ends], 1)
        if rng.random() < 0.3:
            spans[int(rng.integers(len(words)))] = [0, 0]  # a token with no characters
        examples.append(SimpleNamespace(context=context))
        for first in range(0, len(words), 40)[: int(rng.integers(1, 4))]:
            question = np.full((24 if index == 0 else int(rng.integers(2, 12)), 2), -1)  # example 0: room for 20 n-best
            offsets = np.concatenate([question, spans[first : first + 50], [[-1, -1]]]).astype(np.int32)
            features.append({"example_index": index, "offset_mapping": offsets})
    return examples, features


@pytest.mark.parametrize("seed", range(6))
def test_answers_are_run_qas_on_random_logits(seed):
    """Random logits with many ties, some windows with high question logits, and padding the answers must ignore."""
    rng = np.random.default_rng(seed)
    examples, features = random_windows(rng)
    starts, ends = [], []
    for feature in features:
        length = len(feature["offset_mapping"])
        logits = (
            rng.integers(-3, 4, size=(2, length)).astype(np.float32)
            if seed % 2
            else rng.normal(size=(2, length)).astype(np.float32)
        )
        if rng.random() < 0.4:
            logits[:, feature["offset_mapping"][:, 0] < 0] += 8.0  # the question's logits win the n-best places
        if feature["example_index"] == 0 or rng.random() < 0.1:
            logits[:, feature["offset_mapping"][:, 0] >= 0] -= 20.0  # below the question's tokens; example 0: "empty"
        starts.append(logits[0])
        ends.append(logits[1])
    width = max(map(len, starts)) + 5
    padded = [np.stack([np.pad(x, (0, width - len(x)), constant_values=50.0) for x in side]) for side in (starts, ends)]
    expected = run_qa_answers(examples, features, starts, ends)
    assert best_answers(examples, features, *padded) == expected
    assert expected[0] == "empty"


def test_normalize_answer_is_the_official_one():
    assert normalize_answer("  The Quick,  brown-fox! ") == "quick brownfox"
    assert normalize_answer("An apple a day; theatre") == "apple day theatre"
    assert normalize_answer("A.B.C.") == "abc"
    assert normalize_answer("Café  東京\t🎉") == "café 東京 🎉"


def test_exact_match_and_f1_by_hand():
    assert exact_match_score("The Eiffel Tower!", "eiffel tower") == 1.0
    assert exact_match_score("Eiffel", "eiffel tower") == 0.0
    assert f1_score("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)  # P 3/4, R 1
    assert f1_score("Paris France", "Paris") == pytest.approx(2 / 3)  # P 1/2, R 1
    assert f1_score("go go go", "go") == pytest.approx(0.5)  # repeats count once per gold token: P 1/3, R 1
    assert f1_score("", "Paris") == 0.0 and exact_match_score("", "Paris") == 0.0


def test_squad_metrics_take_the_best_gold_answer_and_report_percentages():
    predictions = ["Smiljan", "", "1884."]
    gold = [["Austrian Empire", "Smiljan, Austria"], ["Paris"], ["in 1884", "1884"]]
    assert squad_metrics(predictions, gold) == pytest.approx({"exact_match": 100 / 3, "f1": 100 * (2 / 3 + 0 + 1) / 3})


def test_load_encode_train_predict_score(task, tokenizer, tiny_model_dir, splits, features):
    model = AutoModelForQuestionAnswering.from_pretrained(tiny_model_dir)
    config = TrainConfig(epochs=1, batch_size=len(features["train"]), learning_rate=1e-3, max_length=MAX_LENGTH)
    result = train(model, features["train"], task.collator(tokenizer, train=True), config)
    assert result.steps == 1 and np.isfinite(result.train_loss)
    outputs = predict(model, features["dev"], task.collator(tokenizer, train=False), 4, task.outputs)
    assert outputs["start_logits"].shape == outputs["end_logits"].shape
    assert outputs["start_logits"].shape[0] == len(features["dev"])
    predictions = best_answers(splits["dev"], features["dev"], outputs["start_logits"], outputs["end_logits"])
    assert all(p and p in e.context for p, e in zip(predictions, splits["dev"]))
    scores = task.score(splits["dev"], features["dev"], outputs)
    assert set(scores) == set(task.metrics) and all(0.0 <= v <= 100.0 for v in scores.values())


def test_no_data_says_which_files_to_pass():
    message = (
        "SQuAD does not ship with ticketlab: --data must be a folder with the official train-v1.1.json and "
        "dev-v1.1.json"
    )
    with raises_one_line(message):
        Squad().splits(None)


def test_missing_folder_and_missing_file(tmp_path):
    with raises_one_line(f"{tmp_path / 'nowhere'} is not a folder: SQuAD needs {Squad.files}"):
        Squad().splits(str(tmp_path / "nowhere"))
    (write_squad(tmp_path / "squad") / "dev-v1.1.json").unlink()
    with raises_one_line(f"{tmp_path / 'squad' / 'dev-v1.1.json'} not found: SQuAD needs {Squad.files}"):
        Squad().splits(str(tmp_path / "squad"))


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "dev-v1.1.json"
    path.write_text('{"version": "1.1",\n "data": [}\n', encoding="utf-8")
    with raises_one_line(f"{path}: not valid JSON at line 2 column 11: Expecting value"):
        read_squad(path)


REMOVE = object()
QA = ("data", 1, "paragraphs", 1, "qas", 0)  # question d2
AT_QA = "data[1].paragraphs[1].qas[0]"


@pytest.mark.parametrize(
    "keys, value, message",
    [
        (("data",), REMOVE, "the top level: no 'data'"),
        (("data", 1, "paragraphs"), REMOVE, "data[1]: no 'paragraphs'"),
        (("data", 1, "paragraphs", 1, "context"), REMOVE, "data[1].paragraphs[1]: no 'context'"),
        ((*QA, "answers"), REMOVE, f"{AT_QA}: no 'answers'"),
        ((*QA, "id"), REMOVE, f"{AT_QA}: no 'id'"),
        ((*QA, "answers", 1, "answer_start"), REMOVE, f"{AT_QA}.answers[1]: no 'answer_start'"),
        ((*QA, "answers", 1, "answer_start"), "12", f"{AT_QA}.answers[1]: 'answer_start' is str, expected int"),
        (("data", 0, "paragraphs", 0, "context"), 7, "data[0].paragraphs[0]: 'context' is int, expected str"),
        (
            (*QA, "answers", 0, "answer_start"),
            5,
            f"{AT_QA}.answers[0]: question d2: answer 'golden bridge of kyoto' is not at character 5 of the context",
        ),
        (
            (*QA, "answers", 0, "text"),
            "",
            f"{AT_QA}.answers[0]: question d2: answer '' is not at character {LONG.index('golden')} of the context",
        ),
        ((*QA, "answers"), [], f"{AT_QA}: question d2 has no answers"),
        (("data",), [], "no questions"),
    ],
)
def test_bad_files_give_one_line_naming_the_file_and_the_place(tmp_path, keys, value, message):
    dev = copy.deepcopy(DEV)
    node = functools.reduce(operator.getitem, keys[:-1], dev)
    if value is REMOVE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    folder = write_squad(tmp_path / "squad", dev=dev)
    with raises_one_line(f"{folder / 'dev-v1.1.json'}: {message}"):
        Squad().splits(str(folder))
