"""Shared fixtures: a tiny random BERT saved as a local Hugging Face folder (builds in well under a second), a tiny
fake Fashion-MNIST folder, and one torch thread for the small convolutions of the vision tests (for every test in a
worker of `pytest -n`, as `make test` runs them: a worker per core)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from ticketlab.assets import asset_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "PYTEST_XDIST_WORKER" in os.environ:  # `pytest -n 2`: one worker per core, each with one intra-op thread
    torch.set_num_threads(1)


def tiny_bert_config(**overrides) -> BertConfig:
    settings = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128
    )
    return BertConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer, hidden-32 BERT with the real splade-tiny tokenizer, as `--model PATH` takes it."""
    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(asset_path("splade-tiny"))
    torch.manual_seed(0)
    BertModel(tiny_bert_config(vocab_size=tokenizer.vocab_size)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: small convolutions run several times faster than with two threads on two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory):
    """Fashion-MNIST's four IDX files with 64 train and 32 test random 28x28 images."""
    from helpers import fake_fashion

    root = tmp_path_factory.mktemp("fashion") / "fashion"
    fake_fashion(root, train=64, test=32)
    return root


REVIEW_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly hex every jovial bold knight".split()
)


@pytest.fixture(scope="session")
def reviews(tmp_path_factory):
    """200 snippets labelled fresh or rotten, Rotten Tomatoes' --data (160 train, 20 dev, 20 test): quick to
    evaluate."""
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    rows = [f"{('fresh', 'rotten')[i % 2]},{' '.join(rng.choice(REVIEW_WORDS, 8))} {i}" for i in range(200)]
    path.write_text("\n".join(["category,text", *rows]), encoding="utf-8")
    return path
