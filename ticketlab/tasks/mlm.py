"""Masked language modeling, BERT's pre-training task, on any text; embedded: gensim's shortened English Wikipedia."""

from __future__ import annotations

import bz2
import functools
import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling
from transformers.modeling_outputs import MaskedLMOutput

from ..assets import asset_path
from ..config import TrainConfig
from ..errors import TicketlabError
from ..train.batches import Draws
from ..train.launch import accelerator
from .base import Collate, Task, fixed_split

HELD_OUT_FRACTION = 0.1
MASKING_SEED = 4321  # evaluation masks block i the same way every time: metrics compare across rounds and runs
SPLIT_FILES = {"train": ("train.txt",), "dev": ("dev.txt", "validation.txt", "valid.txt")}
MODEL_KEYS = ("input_ids", "special_tokens_mask")


class MaskedLanguageModeling(Task):
    name = "mlm"
    description = (
        "masked language modeling: 15% of tokens selected, 80% [MASK] / 10% random / 10% kept, in blocks of "
        "max_length tokens (embedded: 106 articles of gensim's shortened English Wikipedia, markup stripped)"
    )
    files = (
        "a text file (one document per line), a folder of .txt files (one document each), "
        "or a folder with train.txt and dev.txt"
    )
    metrics = ("accuracy", "loss", "perplexity")  # masked-token accuracy; cross-entropy and its exp on masked tokens
    metric = "accuracy"
    auto_class = AutoModelForMaskedLM
    distillation = "masked-tokens"
    # Blocks of 128 tokens at Hugging Face run_mlm's learning rate (BERT-tickets prunes its MLM models the same way).
    recipe = TrainConfig(epochs=1, batch_size=32, learning_rate=5e-5, max_length=128)
    small_recipe = TrainConfig(epochs=1, batch_size=32, learning_rate=1e-4, max_length=128)

    def model_options(self, data: str | None = None) -> dict:
        return {}

    def splits(self, data: str | None) -> dict[str, list[str]]:
        """Documents; without separate train and dev files, a fixed 10% of the documents is held out."""
        cached = _read_splits(Path(data) if data else asset_path(self.name))
        return {name: list(documents) for name, documents in cached.items()}

    def encode(self, tokenizer, documents: list[str], max_length: int) -> list[dict]:
        """Documents tokenized with special tokens, concatenated and cut into blocks of `max_length` tokens
        (the remainder is dropped), as Hugging Face's run_mlm groups texts."""
        encoded = tokenizer(documents, return_special_tokens_mask=True, verbose=False)
        ids = [i for document in encoded["input_ids"] for i in document]
        special = [s for document in encoded["special_tokens_mask"] for s in document]
        return [
            {
                "input_ids": ids[start : start + max_length],
                "special_tokens_mask": special[start : start + max_length],
                "block": n,
            }
            for n, start in enumerate(range(0, len(ids) - max_length + 1, max_length))
        ]

    def collator(self, tokenizer, train: bool) -> Collate:
        """Evaluation masks block i with seed i; training batches carry their blocks unmasked, with the masking that
        `forward` applies afresh at every step (dynamic masking)."""
        masking = DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1
        )
        return functools.partial(_unmasked if train else _fixed_masks, masking)

    def forward(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], draws: Draws | None = None
    ) -> MaskedLMOutput:
        """Vocabulary logits only at the masked positions (labels != -100), the only ones loss and metrics read.
        A training batch is masked here, by the step's `draws`; an evaluation batch comes masked.

        The output embeddings (the decoder) see only those rows of their input: this fits any masked LM whose decoder
        is its last step, position by position (BERT, RoBERTa, ALBERT, DistilBERT, ELECTRA, DeBERTa-v2, ModernBERT).
        The call still goes through the (possibly wrapped) model: data-parallel gradient sync and mixed precision stay.
        """
        if draws is not None:
            batch = _dynamic_masks(batch, draws)
        labels = batch["labels"]
        masked = labels != -100
        decoder = accelerator().unwrap_model(model).get_output_embeddings()
        handle = decoder.register_forward_pre_hook(lambda _, args: (args[0][masked],))
        try:
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        finally:
            handle.remove()
        return MaskedLMOutput(loss=F.cross_entropy(logits.float(), labels[masked]), logits=logits)

    def outputs(self, output, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per block: summed loss, correct predictions and number of masked tokens, from logits at the masked
        positions (as `forward` gives them) or at every position."""
        labels = batch["labels"]
        masked = labels != -100
        logits = output.logits.float()
        if logits.ndim == 3:
            logits = logits[masked]
        targets = labels[masked]
        return {
            "loss_sum": _per_block(F.cross_entropy(logits, targets, reduction="none"), masked),
            "correct": _per_block(logits.argmax(-1) == targets, masked),
            "count": masked.sum(1),
        }

    def score(self, examples: list, features: list[dict], outputs: dict[str, np.ndarray]) -> dict[str, float]:
        count = float(outputs["count"].sum())
        if not count:
            raise TicketlabError("no token was masked in the held-out text; it is too short")
        loss = float(outputs["loss_sum"].sum()) / count
        return {"accuracy": float(outputs["correct"].sum()) / count, "loss": loss, "perplexity": perplexity(loss)}


def _per_block(values: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Row sums of `values`, given one per masked position in row-major order."""
    return torch.zeros(masked.shape, dtype=values.dtype, device=values.device).masked_scatter(masked, values).sum(1)


def _unmasked(masking: DataCollatorForLanguageModeling, features: list[dict]) -> dict:
    """A training batch: the blocks as they are, and the masking that `forward` draws for them."""
    stacked = {key: torch.tensor([f[key] for f in features]) for key in MODEL_KEYS}
    return {**stacked, "masking": masking}


def _dynamic_masks(batch: dict, draws: Draws) -> dict[str, torch.Tensor]:
    """A training batch's blocks masked by `draws`, drawn on the CPU: the same masks on every device, and a block's
    the same whatever the number of processes."""
    masking, ids = batch["masking"], batch["input_ids"]

    def mask(ids: torch.Tensor, special: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        masking.generator = generator
        return masking.torch_mask_tokens(ids, special)

    inputs, labels = draws.apply(mask, ids.to("cpu", copy=True), batch["special_tokens_mask"].cpu())
    return {"input_ids": inputs.to(ids.device), "labels": labels.to(ids.device)}


def _fixed_masks(masking: DataCollatorForLanguageModeling, features: list[dict]) -> dict[str, torch.Tensor]:
    """Mask each block with a generator seeded by its number: the same masks whatever the batching or process."""
    inputs, labels = [], []
    for feature in features:
        masking.generator = torch.Generator().manual_seed(MASKING_SEED + feature["block"])
        ids = torch.tensor([feature["input_ids"]])
        masked, label = masking.torch_mask_tokens(ids, torch.tensor([feature["special_tokens_mask"]]))
        inputs.append(masked[0])
        labels.append(label[0])
    return {"input_ids": torch.stack(inputs), "labels": torch.stack(labels)}


@functools.cache
def _read_splits(path: Path) -> dict[str, list[str]]:
    if ".xml" in path.name and path.suffix == ".bz2":
        documents = _wikipedia_articles(path)
    elif path.is_dir() and (path / "train.txt").is_file():
        return {split: _lines(_first_existing(path, names)) for split, names in SPLIT_FILES.items()}
    elif path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise TicketlabError(f"{path}: no .txt files (expected {MaskedLanguageModeling.files})")
        documents = [text for text in (_read_text(f).strip() for f in files) if text]
    elif path.is_file():
        documents = _lines(path)
    else:
        raise TicketlabError(f"data not found: {path}")
    parts = fixed_split(len(documents), {"dev": HELD_OUT_FRACTION}, path)
    return {name: [documents[i] for i in indices] for name, indices in parts.items()}


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise TicketlabError(f"{folder}: has train.txt but no {' or '.join(names)}")


def _lines(path: Path) -> list[str]:
    """One document per non-empty line."""
    documents = [line.strip() for line in _read_text(path).splitlines() if line.strip()]
    if not documents:
        raise TicketlabError(f"{path}: no text (expected one document per line)")
    return documents


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise TicketlabError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise TicketlabError(f"cannot read {path}: {error.strerror}") from None


def _wikipedia_articles(path: Path) -> list[str]:
    """Article texts of a MediaWiki XML dump (redirects dropped), markup stripped by gensim's filter_wiki."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki  # slow to import: only for this corpus

    with bz2.open(path) as dump:
        pages = [text for _, text, _ in extract_pages(dump, filter_namespaces=("0",))]
    articles = [_plain_text(filter_wiki(text)) for text in pages if not text.lstrip().lower().startswith("#redirect")]
    return [article for article in articles if article]


def _plain_text(text: str) -> str:
    """What filter_wiki leaves behind, removed: bold/italic quotes, section headings, blank lines."""
    text = re.sub(r"'{2,}", "", text)
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not re.fullmatch(r"=+.*=+", line))


def perplexity(loss: float) -> float:
    """exp(mean masked loss); inf where that overflows a float (a loss above about 709), as run_mlm.py reports it."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
