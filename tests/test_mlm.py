"""Masked language modeling: reading text, blocks, masking, metrics, logits at masked positions only, the tied head,
MLM tickets downstream."""

from __future__ import annotations

import copy
import json
import logging
import math
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_bert_config
from helpers import StopAfter, documents
from safetensors.torch import load_file, load_model
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer, BertForMaskedLM

from ticketlab import find, load_ticket
from ticketlab.api import apply_ticket
from ticketlab.config import TrainConfig
from ticketlab.errors import TicketlabError
from ticketlab.masks import sparsity
from ticketlab.models import layer_stack_weights, load_pretrained, prunable_weights
from ticketlab.store import RunStore
from ticketlab.tasks import TASKS
from ticketlab.tasks.mlm import _dynamic_masks, _plain_text
from ticketlab.train.batches import Draws, EpochShuffle, call_model, seeded_generator
from ticketlab.train.evaluate import predict
from ticketlab.train.hooks import TrainHook
from ticketlab.train.loop import make_optimizer, train, training_step

MLM = TASKS.get("mlm")
mlm_module = sys.modules["ticketlab.tasks.mlm"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_one_document_per_line_holds_out_a_fixed_tenth(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(documents(30)) + "\n", encoding="utf-8")
    splits = MLM.splits(str(corpus))
    assert (len(splits["train"]), len(splits["dev"])) == (27, 3)
    assert sorted(splits["train"] + splits["dev"]) == sorted(documents(30))
    assert MLM.splits(str(corpus)) == splits


def test_a_folder_of_txt_files_is_one_document_each_and_train_dev_files_are_taken_as_they_are(tmp_path):
    for i, text in enumerate(documents(4)):
        (tmp_path / "docs" / f"{i}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / "docs" / f"{i}.txt").write_text(text + "\nsecond line", encoding="utf-8")
    splits = MLM.splits(str(tmp_path / "docs"))
    assert len(splits["train"]) + len(splits["dev"]) == 4 and all("\nsecond line" in d for d in splits["train"])
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "train.txt").write_text("a b c\nd e f\n", encoding="utf-8")
    (tmp_path / "split" / "validation.txt").write_text("g h i\n", encoding="utf-8")
    assert MLM.splits(str(tmp_path / "split")) == {"train": ["a b c", "d e f"], "dev": ["g h i"]}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "absent.txt", "data not found"),
        (lambda p: (p / "empty.txt").write_text("\n\n") and p / "empty.txt", "empty.txt: no text"),
        (lambda p: (p / "one.txt").write_text("only one\n") and p / "one.txt", "one.txt: 1 example"),
        (
            lambda p: (p / "latin1.txt").write_bytes(b"caf\xe9\nabc\n") and p / "latin1.txt",
            r"latin1.txt: not UTF-8 text \(byte 3\)",
        ),
        (lambda p: (p / "train.txt").write_text("x\n") and p, "has train.txt but no dev.txt"),
    ],
)
def test_bad_text_gives_a_one_line_error_naming_the_file(tmp_path, make, message):
    with pytest.raises(TicketlabError, match=message) as error:
        MLM.splits(str(make(tmp_path)))
    assert "\n" not in str(error.value)


def test_blocks_concatenate_documents_and_drop_the_remainder(tokenizer):
    docs = documents(5, words=30)
    blocks = MLM.encode(tokenizer, docs, 16)
    flat = [i for d in tokenizer(docs)["input_ids"] for i in d]
    assert len(blocks) == len(flat) // 16
    assert [i for b in blocks for i in b["input_ids"]] == flat[: 16 * len(blocks)]
    assert all(len(b["input_ids"]) == len(b["special_tokens_mask"]) == 16 for b in blocks)
    assert [b["block"] for b in blocks] == list(range(len(blocks)))


def test_evaluation_masks_a_block_the_same_way_in_any_batch_and_training_by_the_steps_generator(tokenizer):
    blocks = MLM.encode(tokenizer, documents(40), 32)
    evaluation = MLM.collator(tokenizer, train=False)
    alone = evaluation([blocks[3]])
    among = evaluation([blocks[7], blocks[3], blocks[1]])
    assert torch.equal(alone["input_ids"][0], among["input_ids"][1]) and torch.equal(
        alone["labels"][0], among["labels"][1]
    )
    training = MLM.collator(tokenizer, train=True)(blocks[:8])
    assert torch.equal(training["input_ids"], torch.tensor([b["input_ids"] for b in blocks[:8]]))  # unmasked
    before = torch.get_rng_state()
    first, again, other = (
        _dynamic_masks(training, Draws(torch.Generator().manual_seed(seed)))["labels"] for seed in (0, 0, 1)
    )
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(torch.get_rng_state(), before)  # nothing drawn from the global (dropout) stream
    share = MLM.collator(tokenizer, train=True)(blocks[2:5])  # a process's rows 2-4 of the batch: masked as in it
    masked = _dynamic_masks(share, Draws(torch.Generator().manual_seed(0), (2, 5, 8)))
    assert torch.equal(masked["labels"], first[2:5])


@pytest.mark.usefixtures("one_thread")
def test_the_masks_of_a_training_step_depend_on_the_seed_and_the_step_alone(tokenizer, tmp_path, monkeypatch):
    """A resumed run starts mid-epoch: step k's masks are still those drawn by hand, batch by batch, with the
    generator of the unit's seed and step k."""
    drawn = []
    probe = seeded_generator(3, "flops").initial_seed()  # the FLOPs count masks its batch with the run seed's own

    def recorded(batch, draws):
        masked = _dynamic_masks(batch, draws)
        if draws.generator.initial_seed() != probe:
            drawn.append(masked["labels"])
        return masked

    monkeypatch.setattr(mlm_module, "_dynamic_masks", recorded)
    features, collate = MLM.encode(tokenizer, documents(10), 32), MLM.collator(tokenizer, train=True)
    config = TrainConfig(epochs=2, batch_size=4, seed=3)
    with pytest.raises(KeyboardInterrupt):
        train(
            masked_lm(tokenizer, True),
            features,
            collate,
            config,
            hooks=[StopAfter(3)],
            checkpoint=tmp_path / "c.pt",
            checkpoint_every=2,
            forward=MLM.forward,
            seed=11,
        )
    train(
        masked_lm(tokenizer, True),
        features,
        collate,
        config,
        checkpoint=tmp_path / "c.pt",
        forward=MLM.forward,
        seed=11,
    )
    steps_per_epoch = math.ceil(len(features) / config.batch_size)
    order = EpochShuffle(len(features), config.seed)
    by_hand = []
    for epoch in range(config.epochs):
        order.set_epoch(epoch)
        indices = list(order)
        for start in range(0, len(features), config.batch_size):
            batch = collate([features[i] for i in indices[start : start + config.batch_size]])
            by_hand.append(_dynamic_masks(batch, Draws(seeded_generator(11, "data", len(by_hand) + 1)))["labels"])
    assert len(by_hand) == 2 * steps_per_epoch
    expected = by_hand[:3] + by_hand[2:]  # steps 1-3, then from the checkpoint of step 2 to the end
    assert len(drawn) == len(expected) and all(torch.equal(a, b) for a, b in zip(drawn, expected))


def test_masking_selects_15_percent_of_ordinary_tokens_80_10_10(tokenizer):
    blocks = MLM.encode(tokenizer, documents(400), 64)
    batch = MLM.collator(tokenizer, train=False)(blocks)
    original = torch.tensor([b["input_ids"] for b in blocks])
    special = torch.tensor([b["special_tokens_mask"] for b in blocks]).bool()
    selected = batch["labels"] != -100
    assert not (selected & special).any()
    assert torch.equal(batch["labels"][selected], original[selected])
    assert selected.sum() / (~special).sum() == pytest.approx(0.15, abs=0.01)
    chosen = batch["input_ids"][selected]
    masked = (chosen == tokenizer.mask_token_id).float().mean()
    kept = (chosen == original[selected]).float().mean()
    assert masked == pytest.approx(0.8, abs=0.02) and kept == pytest.approx(0.1 + 0.1 / tokenizer.vocab_size, abs=0.02)


def test_metrics_are_masked_token_accuracy_loss_and_perplexity():
    logits = torch.log_softmax(torch.randn(3, 5, 7), -1)
    labels = torch.full((3, 5), -100)
    labels[0, 1], labels[1, 0], labels[1, 4], labels[2, 2] = 3, 6, 0, logits[2, 2].argmax()
    rows = MLM.outputs(type("Out", (), {"logits": logits})(), {"labels": labels})
    scores = MLM.score([], [], {k: v.numpy() for k, v in rows.items()})
    picked = [(0, 1), (1, 0), (1, 4), (2, 2)]
    loss = -sum(float(logits[b, t, labels[b, t]]) for b, t in picked) / 4
    accuracy = sum(int(logits[b, t].argmax() == labels[b, t]) for b, t in picked) / 4
    assert scores["loss"] == pytest.approx(loss, rel=1e-5)
    assert scores["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert scores["accuracy"] == accuracy and accuracy >= 0.25


def test_wiki_leftovers_are_removed():
    text = "'''Anarchism''' is a ''political'' philosophy.\n\n==Etymology==\n\n The term\n=== Sub ===\n"
    assert _plain_text(text) == "Anarchism is a political philosophy.\nThe term"


def test_a_checkpoint_without_mlm_head_gets_a_tied_new_one_and_says_so(tiny_model_dir, caplog):
    with caplog.at_level(logging.INFO, logger="ticketlab"):
        model = load_pretrained(tiny_model_dir, AutoModelForMaskedLM, seed=0)
    assert "cls.predictions.transform.dense.weight" in caplog.text and "tied to the word embeddings" in caplog.text
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_imp_on_mlm_keeps_the_decoder_tied_and_its_ticket_fits_a_classifier(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(documents(40)), encoding="utf-8")
    result = find(
        str(tiny_model_dir),
        "mlm",
        data=str(corpus),
        sparsity=0.2,
        out=tmp_path / "runs",
        schedule="linear",
        rate=0.1,
        max_length=32,
        batch_size=8,
    )
    assert [r["round"] for r in result.rounds] == [0, 1, 2]
    assert set(result.rounds[2]["dev"]) == {"accuracy", "loss", "perplexity"}
    # the cost ledger's probe batch is masked by the run's seed, not the round's: one FLOPs figure for the same steps
    assert len({r["cost"]["forward_flops"] for r in result.rounds}) == 1

    trained = AutoModelForMaskedLM.from_pretrained(tiny_model_dir)
    load_model(trained, str(RunStore.open(result.path).weights_path(2)))
    assert trained.get_output_embeddings().weight is trained.get_input_embeddings().weight
    ticket = load_ticket(result.path)
    assert sparsity(ticket) == pytest.approx(0.2, abs=1e-3)
    assert all((w[~ticket[n]] == 0).all() for n, w in prunable_weights(trained).items())

    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    assert "pooler.dense.weight" in prunable_weights(classifier) and "pooler.dense.weight" not in ticket
    apply_ticket(classifier, ticket)
    weights = prunable_weights(classifier)
    assert all((weights[n][~ticket[n]] == 0).all() for n in layer_stack_weights(classifier))
    assert (weights["pooler.dense.weight"] != 0).all()
    classifier_ticket = {n: torch.rand(w.shape) > 0.5 for n, w in weights.items()}
    apply_ticket(trained, classifier_ticket)  # the pooler's entry has no weight here and is dropped
    assert all((w[~classifier_ticket[n]] == 0).all() for n, w in prunable_weights(trained).items())


def masked_lm(tokenizer, tied: bool) -> BertForMaskedLM:
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_bert_config(vocab_size=tokenizer.vocab_size, tie_word_embeddings=tied))
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    return model


class RecordGradients(TrainHook):
    def after_backward(self, model):
        self.gradients = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_a_training_step_with_logits_at_masked_positions_only_has_the_full_loss_and_gradients(tokenizer, tied):
    model = masked_lm(tokenizer, tied)
    batch = MLM.collator(tokenizer, train=False)(MLM.encode(tokenizer, documents(20), 32))
    masked = batch["labels"] != -100
    with torch.no_grad():
        full_logits, selected_logits = call_model(model, batch).logits, MLM.forward(model, batch).logits
    assert full_logits.shape[:2] == masked.shape and selected_logits.shape == (masked.sum(), tokenizer.vocab_size)
    config = TrainConfig()
    runs = []
    for forward in (call_model, MLM.forward):
        copied, record = copy.deepcopy(model), RecordGradients()
        optimizer = make_optimizer(copied, config)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        torch.manual_seed(1)  # the same dropout
        runs.append((training_step(copied, batch, optimizer, scheduler, [record], 1.0, 1, forward), record.gradients))
    (full_loss, full_gradients), (selected_loss, selected_gradients) = runs
    assert float(selected_loss) == pytest.approx(float(full_loss), rel=1e-5)
    assert full_gradients.keys() == selected_gradients.keys()
    for name, gradient in full_gradients.items():
        torch.testing.assert_close(selected_gradients[name], gradient, rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_evaluation_with_logits_at_masked_positions_only_has_the_full_metrics(tokenizer, tied):
    model = masked_lm(tokenizer, tied)
    features = MLM.encode(tokenizer, documents(40), 32)
    config = TrainConfig(epochs=1, batch_size=8, learning_rate=1e-2)
    train(
        model, features, MLM.collator(tokenizer, train=True), config, forward=MLM.forward
    )  # so that some guesses are right
    collate = MLM.collator(tokenizer, train=False)
    full = predict(model, features, collate, 4, MLM.outputs)
    selected = predict(model, features, collate, 4, MLM.outputs, MLM.forward)
    assert np.array_equal(selected["correct"], full["correct"]) and np.array_equal(selected["count"], full["count"])
    np.testing.assert_allclose(selected["loss_sum"], full["loss_sum"], rtol=1e-5)
    full_scores, selected_scores = (MLM.score([], features, outputs) for outputs in (full, selected))
    assert selected_scores["accuracy"] == full_scores["accuracy"] > 0
    for metric in ("loss", "perplexity"):
        assert selected_scores[metric] == pytest.approx(full_scores[metric], rel=1e-5)


def test_a_loss_past_exps_range_has_infinite_perplexity():
    outputs = {"loss_sum": np.array([7200.0, 1.0]), "correct": np.array([0, 1]), "count": np.array([8, 2])}
    scores = TASKS.get("mlm").score([], [], outputs)  # mean loss 720.1: exp overflows a float
    assert scores == {"accuracy": 0.1, "loss": pytest.approx(720.1), "perplexity": math.inf}
    assert TASKS.get("mlm").score([], [], {**outputs, "loss_sum": np.array([8.0, 2.0])})["perplexity"] == pytest.approx(
        math.e
    )


def warmed_find(tiny_model_dir, corpus, out, hooks=()):
    return find(
        str(tiny_model_dir),
        "mlm",
        data=str(corpus),
        sparsity=0.1,
        out=out,
        max_length=32,
        batch_size=8,
        epochs=1,
        head_warmup_epochs=2,
        head_warmup_lr=1e-2,
        checkpoint_every=1,
        hooks=hooks,
    )


def test_a_warmed_mlm_head_is_a_sealed_unit_that_resumes_bit_for_bit_and_starts_every_round(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(documents(40)), encoding="utf-8")
    straight = warmed_find(tiny_model_dir, corpus, tmp_path / "straight")
    assert "_warmhead-" in straight.path.name
    with pytest.raises(KeyboardInterrupt):  # killed inside the warm-up's second epoch
        warmed_find(tiny_model_dir, corpus, tmp_path / "resumed", hooks=[StopAfter(7)])
    resumed = warmed_find(tiny_model_dir, corpus, tmp_path / "resumed")
    unit = RunStore.open(straight.path).head_warmup().round_dir(0)
    again = RunStore.open(resumed.path).head_warmup().round_dir(0)
    assert (unit / "COMPLETE").is_file() and not (unit / "checkpoint.pt").exists()
    assert (unit / "head.safetensors").read_bytes() == (again / "head.safetensors").read_bytes()
    record = json.loads((unit / "metrics.json").read_text())
    assert record["steps"] == 2 * straight.rounds[0]["steps"] and set(record["dev"]) == {
        "accuracy",
        "loss",
        "perplexity",
    }
    warmed = load_file(str(unit / "head.safetensors"))
    start = load_file(str(RunStore.open(straight.path).head_path(0)))  # round 0's starting head: the warmed one
    assert warmed.keys() == start.keys() and all(torch.equal(warmed[k], start[k]) for k in warmed)
    fresh = dict(load_pretrained(tiny_model_dir, AutoModelForMaskedLM, 0).named_parameters())  # the run's seed
    assert all(not torch.equal(warmed[k], fresh[k]) for k in warmed)  # every head tensor moved in its warm-up
    for a, b in zip(sorted(straight.path.rglob("*.safetensors")), sorted(resumed.path.rglob("*.safetensors"))):
        if a.name != "weights.safetensors":
            assert a.read_bytes() == b.read_bytes(), a.relative_to(straight.path)
        else:  # the tied decoder and embeddings are one tensor, saved under either name: compare the values
            values = [sorted(t.numpy().tobytes() for t in load_file(str(f)).values()) for f in (a, b)]
            assert values[0] == values[1], a.relative_to(straight.path)


def test_a_head_warmup_below_zero_is_refused():
    with pytest.raises(TicketlabError, match="^head_warmup_epochs must be >= 0, got -1$"):
        TrainConfig(head_warmup_epochs=-1)
    with pytest.raises(TicketlabError, match="^head_warmup_lr is a setting of the head warm-up, and head_warmup"):
        TrainConfig(head_warmup_lr=1e-3)
    with pytest.raises(TicketlabError, match="^head_warmup_lr must be a finite number"):
        TrainConfig(head_warmup_epochs=1, head_warmup_lr=float("nan"))
