"""What several tests share: a hook that interrupts training, the `ticketlab` command run in a child process that is
killed (SIGKILL) at chosen points and run again, and the comparison of what two runs leave behind; the `ticketlab`
command in a subprocess; the data files the tests write (GLUE TSVs, SQuAD JSON, MLM documents, IDX images)."""

from __future__ import annotations

import gzip
import hashlib
import json
import multiprocessing
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ticketlab.store.records import RoundRecord, Trained
from ticketlab.train.hooks import TrainHook

# Children fork from a server that has imported ticketlab once: a run starts in milliseconds, not the seconds an import
# of torch and transformers takes, and it is still a process of its own that SIGKILL ends wherever it is.
COMMANDS = multiprocessing.get_context("forkserver")
COMMANDS.set_forkserver_preload(["ticketlab.cli"])
TIMEOUT_S = 240


class StopAfter(TrainHook):
    """Interrupts training (as a KeyboardInterrupt would) after the `at`-th step."""

    def __init__(self, at: int):
        self.at = at

    def after_step(self, step, model):
        if step == self.at:
            raise KeyboardInterrupt


def _ticketlab(args: Sequence[str], stderr: str, stdout: str = os.devnull, cwd: str | None = None) -> None:
    """`ticketlab ARGS` as `python -m ticketlab` runs it, in `cwd`; its standard error goes to the file `stderr`, its
    standard output to `stdout`, its tables 200 columns wide."""
    from ticketlab.cli import main

    with open(stdout, "ab") as output, open(stderr, "ab") as errors:
        os.dup2(output.fileno(), 1)
        os.dup2(errors.fileno(), 2)
    os.environ["COLUMNS"] = "200"
    if cwd is not None:
        os.chdir(cwd)
    torch.set_num_threads(1)  # the tests' tiny models run several times faster than with two threads on busy cores
    sys.exit(main(list(args)))


def _hold(run: str, held: Any, release: Any) -> None:
    from ticketlab.store import RunStore

    with RunStore(run).lock():
        held.set()
        release.wait(TIMEOUT_S)


def hold_lock(run: Path) -> tuple[multiprocessing.Process, Any]:
    """A process of its own (forked from the warm server) that holds `run`'s lock until the returned event is set."""
    held, release = COMMANDS.Event(), COMMANDS.Event()
    process = COMMANDS.Process(target=_hold, args=(str(run), held, release))
    process.start()
    assert held.wait(TIMEOUT_S), "the holder never took the lock"
    return process, release


def start(args: Sequence[Any], stderr: Path, **streams: Any) -> multiprocessing.Process:
    process = COMMANDS.Process(target=_ticketlab, args=([str(a) for a in args], str(stderr)), kwargs=streams)
    process.start()
    return process


def run(args: Sequence[Any], stderr: Path, **streams: Any) -> int:
    """Run `ticketlab ARGS` to its end; its exit status."""
    process = start(args, stderr, **streams)
    process.join(TIMEOUT_S)
    if process.exitcode is None:
        process.kill()
        raise AssertionError(f"ticketlab {' '.join(map(str, args))} ran past {TIMEOUT_S} s")
    return process.exitcode


def run_ok(args: Sequence[Any], stderr: Path) -> None:
    assert run(args, stderr) == 0, stderr.read_text()


def kill_when(args: Sequence[Any], out: Path, pattern: str, stderr: Path) -> Path:
    """Start `ticketlab ARGS` and SIGKILL it once a file matching `pattern` (a glob under `out`) appears."""
    assert not list(out.glob(pattern)), f"{pattern} exists before the run starts"
    process = start(args, stderr)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while process.exitcode is None and time.monotonic() < deadline:
            found = sorted(out.glob(pattern))
            if found:
                os.kill(process.pid, signal.SIGKILL)
                process.join()
                return found[0]
            time.sleep(0.005)
    finally:
        if process.exitcode is None:
            process.kill()
            process.join()
    raise AssertionError(f"the run ended before {pattern} appeared: {stderr.read_text()[-2000:]}")


def resume_after_kills(args: Sequence[Any], out: Path, patterns: Sequence[str]) -> None:
    """Kill `ticketlab ARGS` once each of `patterns` appears (each time started again), then run it to its end."""
    stderr = out.parent / f"{out.name}.stderr"
    for pattern in patterns:
        kill_when(args, out, pattern, stderr)
    run_ok(args, stderr)


def assert_same_outputs(resumed: Path, uninterrupted: Path) -> None:
    """The two folders hold the same files (nothing left over), the same tensors in every safetensors file (masks,
    weights, structures, saved models) and the same JSON but for times; other files are equal byte for byte
    (hidden ones, a run's lock and its holder, only by name)."""
    names = sorted(p.relative_to(uninterrupted) for p in uninterrupted.rglob("*") if p.is_file())
    assert sorted(p.relative_to(resumed) for p in resumed.rglob("*") if p.is_file()) == names
    for name in names:
        a, b = resumed / name, uninterrupted / name
        if any(part.startswith(".") for part in name.parts):
            continue
        if name.suffix == ".safetensors":
            first, second = load_file(a), load_file(b)
            assert first.keys() == second.keys(), name
            assert all(torch.equal(first[k], second[k]) for k in first), name
            assert _metadata(a) == _metadata(b), name
        elif name.name == "COMPLETE":  # the digests of files holding times differ: only their names count
            first, second = (json.loads(path.read_text()) for path in (a, b))
            assert sorted(first.pop("files")) == sorted(second.pop("files")) and first == second, name
        elif name.suffix == ".json":
            assert _without_times(json.loads(a.read_text())) == _without_times(json.loads(b.read_text())), name
        else:
            assert a.read_bytes() == b.read_bytes(), name


def _metadata(path: Path) -> dict[str, str] | None:
    with safe_open(path, "pt") as handle:
        return handle.metadata()


def _without_times(value: Any) -> Any:
    """JSON without what differs from run to run: durations (keys naming a time)."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if "time" not in k}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def flip(path: Path) -> None:
    """Flip one bit near the end of a file (inside a safetensors file's last tensor: it still parses)."""
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    """Cut a file to half its length."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# --- The `ticketlab` command in a subprocess --------------------------------------------------------------------------


TINY = ["--train-examples", "32", "--batch-size", "16", "--epochs", "1", "--sparsity", "0.1"]


def run_cli(*args: Any, cwd: Path | None = None, fresh: bool = False) -> subprocess.CompletedProcess:
    """`ticketlab ARGS` in a child process, its tables printed 200 columns wide: forked from the server that has
    imported ticketlab, or with `fresh` a new interpreter, as a user's shell starts it (imports included)."""
    if fresh:
        env = {**os.environ, "COLUMNS": "200"}
        command = [sys.executable, "-m", "ticketlab", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=TIMEOUT_S)
    with tempfile.TemporaryDirectory() as streams:
        stdout, stderr = Path(streams, "stdout"), Path(streams, "stderr")
        code = run(args, stderr, stdout=str(stdout), cwd=None if cwd is None else str(cwd))
        return subprocess.CompletedProcess(args, code, stdout.read_text(), stderr.read_text())


def snapshot(folder):
    return {
        p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- GLUE: a task's folder of TSVs ------------------------------------------------------------------------------------


BINARY = ("0", "1")
NLI = ("entailment", "not_entailment")
PAIR = ("sentence1", "sentence2")
QUESTIONS = ("question1", "question2")
GLUE_WORDS = "the a cat dog sat ran on under mat park quickly slowly big small red it was not very".split()


@dataclass(frozen=True)
class Layout:
    """A task's files as GLUE's download script leaves them, and its text columns in Hugging Face's export."""

    folder: str
    header: str  # the header line (tab-separated)
    texts: tuple[str, ...]  # its text column(s)
    label: str  # its label column
    labels: tuple[str, ...]  # the TSVs' label values in the order of Hugging Face's ids; () for STS-B's scores
    hf_texts: tuple[str, ...]
    dev: tuple[str, ...] = ("dev",)  # the labelled dev files
    dev_header: str | None = None  # where the dev files differ
    headerless: bool = False  # the header line is not in the files
    bom: bool = False


MNLI_HEAD = "\t".join(
    (
        "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse sentence2_parse "
        "sentence1 sentence2"
    ).split()
)
LAYOUTS = {
    "cola": Layout(
        "CoLA", "source\tlabel\tannotation\tsentence", ("sentence",), "label", BINARY, ("sentence",), headerless=True
    ),
    "sst2": Layout("SST-2", "sentence\tlabel", ("sentence",), "label", BINARY, ("sentence",)),
    "mrpc": Layout(
        "MRPC",
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        ("#1 String", "#2 String"),
        "Quality",
        BINARY,
        PAIR,
        bom=True,
    ),
    "stsb": Layout(
        "STS-B",
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
        PAIR,
        "score",
        (),
        PAIR,
    ),
    "qqp": Layout(
        "QQP", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", QUESTIONS, "is_duplicate", BINARY, QUESTIONS
    ),
    "mnli": Layout(
        "MNLI",
        f"{MNLI_HEAD}\tlabel1\tgold_label",
        PAIR,
        "gold_label",
        ("entailment", "neutral", "contradiction"),
        ("premise", "hypothesis"),
        ("dev_matched", "dev_mismatched"),
        f"{MNLI_HEAD}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label",
    ),
    "qnli": Layout(
        "QNLI", "index\tquestion\tsentence\tlabel", ("question", "sentence"), "label", NLI, ("question", "sentence")
    ),
    "rte": Layout("RTE", "index\tsentence1\tsentence2\tlabel", PAIR, "label", NLI, PAIR),
    "wnli": Layout("WNLI", "index\tsentence1\tsentence2\tlabel", PAIR, "label", BINARY, PAIR),
}


def rows(name: str, split: str) -> list[tuple[tuple[str, ...], str, int | float]]:
    """(texts, the TSV's label, Hugging Face's label) of a split; the first text has a lone double quote."""
    layout, rng = LAYOUTS[name], random.Random(f"{name}/{split}")
    out = []
    for i in range(16 if split == "train" else 8):
        texts = tuple(" ".join(rng.choices(GLUE_WORDS, k=rng.randint(3, 12))) for _ in layout.texts)
        if i == 0:
            texts = ('"hi he said and left',) + texts[1:]  # a field that opens a quote it never closes
        if layout.labels:
            out.append((texts, layout.labels[i % len(layout.labels)], i % len(layout.labels)))
        else:
            score = f"{rng.uniform(0, 5):.3f}"
            out.append((texts, score, float(np.float32(score))))  # Hugging Face stores float32 scores
    return out


def write_glue(root: Path, name: str) -> Path:
    """The task's folder of TSVs under `root` (glue_data), test.tsv (unlabelled) included."""
    layout = LAYOUTS[name]
    folder = root / layout.folder
    folder.mkdir(parents=True)
    for split in ("train", *layout.dev):
        header = layout.dev_header if layout.dev_header and split != "train" else layout.header
        columns = header.split("\t")
        lines = [] if layout.headerless else [header]
        for i, (texts, label, _) in enumerate(rows(name, split)):
            values = dict.fromkeys(columns, str(i)) | dict(zip(layout.texts, texts))  # ids, genres, parses: filler
            values |= {column: label for column in columns if column.startswith("label")} | {layout.label: label}
            lines.append("\t".join(values[column] for column in columns))
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8-sig" if layout.bom else "utf-8")
    (folder / "test.tsv").write_text("index\tsentence\n0\tno label here\n", encoding="utf-8")
    return folder


# --- SQuAD v1.1: the official files -----------------------------------------------------------------------------------


FILLER = " ".join("river stone house garden light table window paper music forest".split() * 5)  # 50 tokens
LONG = f"{FILLER} and then the golden bridge of kyoto {FILLER} {FILLER} and the silver moon rises over {FILLER}."
CURIE = "Marie Curie was born in Warsaw in 1867. She won the Nobel Prize in Physics in 1903."
CAFE = "Le Café de Flore à Paris serves crème brûlée. 東京 has many cafés too. The sign 🎉 means a party."
TESLA = "Nikola Tesla was born in 1856 in Smiljan, in the Austrian Empire. He moved to New York in 1884."


def paragraph(context: str, *questions: tuple[str, ...]) -> dict:
    """A paragraph in the official layout; each question is (id, question, *answer texts found in the context)."""
    qas = [
        {"id": qid, "question": question, "answers": [{"text": a, "answer_start": context.index(a)} for a in answers]}
        for qid, question, *answers in questions
    ]
    return {"context": context, "qas": qas}


def squad_json(*articles: list[dict]) -> dict:
    return {"version": "1.1", "data": [{"title": f"article {i}", "paragraphs": p} for i, p in enumerate(articles)]}


TRAIN = squad_json(
    [
        paragraph(
            CURIE, ("c1", "Where was Marie Curie born?", "Warsaw"), ("c2", "When did she win the Nobel Prize?", "1903")
        ),
        paragraph(
            CAFE,
            ("u1", "What does the café serve?", "crème brûlée"),
            ("u2", "Which city has many cafés?", "東京"),
            ("u3", "Which sign means a party?", "🎉"),
        ),
    ],
    [paragraph(LONG, ("l1", "What is made of gold?", "golden bridge of kyoto"), ("l2", "What rises?", "silver moon"))],
)
DEV = squad_json(
    [
        paragraph(
            TESLA, ("t1", "Where was Tesla born?", "Smiljan", "Smiljan, in the Austrian Empire", "Austrian Empire")
        )
    ],
    [
        paragraph(CAFE, ("d1", "What is the café called?", "Café de Flore", "Le Café de Flore")),
        paragraph(
            LONG,
            ("d2", "What is made of gold?", "golden bridge of kyoto", "the golden bridge"),
            ("d3", "What rises?", "silver moon"),
        ),
    ],
)


def write_squad(folder, train=TRAIN, dev=DEV):
    folder.mkdir(exist_ok=True)
    for name, data in (("train-v1.1.json", train), ("dev-v1.1.json", dev)):
        (folder / name).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return folder


# --- Masked language modeling: documents of random words --------------------------------------------------------------


MLM_WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex every jovial bold knight".split()


def documents(count: int, words: int = 40) -> list[str]:
    rng = np.random.default_rng(count)
    return [" ".join(rng.choice(MLM_WORDS, words)) for _ in range(count)]


# --- Image files: IDX and a fake Fashion-MNIST ------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> Path:
    """The IDX format written from its description: 0 0 dtype-code ndim, big-endian uint32 dims, big-endian data."""
    data = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def fake_fashion(
    root: Path, train: int = 5, test: int = 3, gz: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four IDX files with random 28x28 images; returns what was written."""
    rng = np.random.default_rng(0)
    root.mkdir(exist_ok=True)
    written = {}
    for split, prefix, n in (("train", "train", train), ("test", "t10k", test)):
        images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        suffix = ".gz" if gz else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        written[split] = (images, labels)
    return written


# --- A tiny ResNet ----------------------------------------------------------------------------------------------------


TINY_RESNET = dict(
    block="basic", layers=[1, 1], widths=[4, 8], in_channels=1, small_stem=True, queue_size=32, projection_dim=8
)
TINY_RESNET_PRUNABLE = {  # the conv weights IMP prunes in the tiny layout: every conv but the stem's conv1
    "layer1.0.conv1.weight",
    "layer1.0.conv2.weight",
    "layer2.0.conv1.weight",
    "layer2.0.conv2.weight",
    "layer2.0.downsample.0.weight",
}


def trained_record(round: int, level: float, metrics: dict[str, dict[str, float]]) -> RoundRecord:
    """The record of a unit trained 10 steps at `level` that measured `metrics` and spent nothing recorded."""
    return RoundRecord(round, level, level, Trained(10, 0.5, 1.0, 1.0, metrics, {}))
