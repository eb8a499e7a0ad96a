"""Bad input, verb by verb: a non-zero exit and one line on stderr starting "ticketlab", no traceback, no warning or log
line before it, nothing written under the current folder or --out, and every existing file unchanged byte for byte.

Each case runs in-process through ticketlab.cli.main; a path in braces is one of the `inputs` fixture's.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import yaml
from helpers import flip
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertConfig, BertModel, GPT2Config, GPT2Model, RobertaConfig, RobertaModel

import ticketlab
from ticketlab.assets import asset_path
from ticketlab.cli import main
from ticketlab.masks import ones_like, save_mask
from ticketlab.models import max_positions, prunable_weights
from ticketlab.models.vision import ResNetConfig, ResNetModel

TINY = ["--train-examples", "16", "--batch-size", "16", "--epochs", "1", "--sparsity", "0.1"]
FIND = ["find", "--model", "{tiny}", *TINY, "--out", "{out}"]
EARLYBERT = [
    "earlybert",
    "--model",
    "{tiny}",
    "--train-examples",
    "16",
    "--batch-size",
    "16",
    "--epochs",
    "1",
    "--out",
    "{out}",
]
TRANSFER = ["transfer", "--ticket", "{run}:1", "--task", "rotten-tomatoes", *TINY, "--out", "{out}"]
QUICK = {"epochs": 1, "train_examples": 8}  # pre-training options
PRETRAIN = ["pretrain", "--data", "{fashion}", "--epochs", "1", "--train-examples", "8", "--out", "{out}"]
IMPORT = ["import-resnet", "{resnet}", "--arch", "resnet-small", "--in-channels", "1", "--out", "{out}"]
LONG = "x" * 256  # one path component over the 255 bytes a file name may have

RECIPE = {  # a recipe that would run in seconds; each experiment case changes one setting
    "model": "{tiny}",
    "tasks": {"rotten-tomatoes": {"train_examples": 16, "batch_size": 16, "epochs": 1}},
    "prune": {"sparsity": 0.1},
}
TWO_TASKS = {**RECIPE["tasks"], "mlm": {"train_examples": 1, "batch_size": 8, "epochs": 1}}


def recipe(**changes) -> dict:
    return {**RECIPE, **changes}


CASES: dict[str, list[str] | dict] = {
    # the command itself
    "no verb": [],
    "unknown verb": ["fly"],
    "unknown option": ["find", "--bogus"],
    "tasks with an argument": ["tasks", "extra"],
    "tasks with an option": ["tasks", "--all"],
    # find: the model
    "find unknown model": ["find", "--model", "bert-huge", "--out", "{out}"],
    "find model folder without config": ["find", "--model", "{empty}", "--out", "{out}"],
    "find model is a file": ["find", "--model", "{file}", "--out", "{out}"],
    "find model name too long": ["find", "--model", LONG, "--out", "{out}"],
    "find truncated weights": ["find", "--model", "{truncated}", *TINY, "--out", "{out}"],
    "find gpt-2 (no padding token)": ["find", "--model", "{gpt2}", *TINY, "--out", "{out}"],
    "find gpt-2 with a padding token (nothing prunable)": ["find", "--model", "{gpt2_padded}", *TINY, "--out", "{out}"],
    "find max length past the positions": [*FIND, "--max-length", "512"],
    "find max length one past the positions": [*FIND, "--max-length", "129"],
    "find roberta max length past its offset positions": [
        "find",
        "--model",
        "{roberta}",
        *TINY,
        "--max-length",
        "33",
        "--out",
        "{out}",
    ],
    "find text task on a resnet": ["find", "--model", "{resnet_model}", *TINY, "--out", "{out}"],
    "find image task on a text model": [
        "find",
        "--model",
        "{tiny}",
        "--task",
        "fashion-mnist",
        "--data",
        "{fashion}",
        *TINY,
        "--out",
        "{out}",
    ],
    # find: task, data, metric
    "find unknown task": ["find", "--model", "{tiny}", "--task", "nope", "--out", "{out}"],
    "find missing data": ["find", "--model", "{tiny}", "--data", "{missing}", "--out", "{out}"],
    "find data name too long": ["find", "--model", "{tiny}", "--data", LONG, "--out", "{out}"],
    "find data two rows": [*FIND, "--task", "rotten-tomatoes", "--data", "{two_rows}"],
    "find unknown metric": [*FIND, "--metric", "f1"],
    "find unknown split": [*FIND, "--metric", "train/accuracy"],
    "find unknown control": [*FIND, "--controls", "bogus"],
    # find: pruning
    "find sparsity zero": [*FIND, "--sparsity", "0"],
    "find sparsity one": [*FIND, "--sparsity", "1"],
    "find sparsity text": [*FIND, "--sparsity", "lots"],
    "find sparsity nan": [*FIND, "--sparsity", "nan"],
    "find sparsity negative": [*FIND, "--sparsity", "-0.5"],
    "find rate zero": [*FIND, "--rate", "0"],
    "find rate nan": [*FIND, "--rate", "nan"],
    "find rate past the target": [*FIND, "--rate", "0.7", "--sparsity", "0.3"],
    "find head warmup negative": [*FIND, "--head-warmup-epochs", "-1"],
    "find head warmup a word": [*FIND, "--head-warmup-epochs", "one"],
    "find head warmup lr without a warmup": [*FIND, "--head-warmup-lr", "1e-3"],
    "find head warmup lr zero": [*FIND, "--head-warmup-epochs", "1", "--head-warmup-lr", "0"],
    "find controls at a sparsity the schedule skips": [*FIND, "--controls", "random", "--controls-at", "0.05"],
    "find controls at without controls": [*FIND, "--controls-at", "0.1"],
    "find controls at falling": [*FIND, "--controls", "random", "--controls-at", "0.1,0.05"],
    "find controls at a word": [*FIND, "--controls", "random", "--controls-at", "half"],
    "find schedule levels falling": [*FIND, "--schedule", "0.5,0.3"],
    "find schedule levels past the target": [*FIND, "--schedule", "0.05,0.2"],
    "find schedule a word": [*FIND, "--schedule", "cubic"],
    "find distill alpha above 1": [*FIND, "--distill", "--distill-alpha", "1.5"],
    "find distill alpha below 0": [*FIND, "--distill", "--distill-alpha", "-0.1"],
    "find distill alpha nan": [*FIND, "--distill", "--distill-alpha", "nan"],
    "find distill temperature zero": [*FIND, "--distill", "--distill-temperature", "0"],
    "find distill temperature negative": [*FIND, "--distill", "--distill-temperature", "-2"],
    "find distill temperature nan": [*FIND, "--distill", "--distill-temperature", "nan"],
    "find distill alpha without distill": [*FIND, "--distill-alpha", "0.5"],
    "find distill on a contrastive task": [
        "find",
        "--model",
        "{tiny}",
        "--task",
        "fashion-mnist-simclr",
        "--distill",
        "--out",
        "{out}",
    ],
    "find unknown precision": [*FIND, "--precision", "fp16"],
    "earlybert distill temperature zero": [*EARLYBERT, "--distill", "--distill-temperature", "0"],
    "pretrain unknown precision": [*PRETRAIN, "--precision", "int4"],
    "find unknown schedule": [*FIND, "--schedule", "cubic"],
    "find unknown scope": [*FIND, "--scope", "layer"],
    "find unknown granularity": [*FIND, "--granularity", "blok:4x4"],
    "find granularity of empty blocks": [*FIND, "--granularity", "block:0x4"],
    "find granularity n above m": [*FIND, "--granularity", "3:2"],
    "find granularity of three numbers": [*FIND, "--granularity", "2:4:8"],
    "find n:m above the schedule's first level": [*FIND, "--granularity", "2:4"],
    "find negative rewind step": [*FIND, "--rewind-step", "-1"],
    "find rewind step past the round": [*FIND, "--rewind-step", "999"],
    "find negative rewind epoch": [*FIND, "--rewind-epoch", "-1"],
    "find rewind step and epoch": [*FIND, "--rewind-step", "1", "--rewind-epoch", "1"],
    "find settle threshold one": [*FIND, "--method", "early-bird", "--settle-threshold", "1"],
    "find early-bird draws that cannot settle in a round": [*FIND, "--method", "early-bird", "--draw-every", "1"],
    "find a gmp setting with imp": [*FIND, "--gmp-end", "0.9"],
    "find an early-bird setting with gmp": [*FIND, "--method", "gmp", "--final-only"],
    "find a wanda setting with one-shot": [*FIND, "--method", "one-shot", "--calibration-examples", "8"],
    # find: training
    "find epochs zero": [*FIND, "--epochs", "0"],
    "find epochs negative": [*FIND, "--epochs", "-1"],
    "find epochs text": [*FIND, "--epochs", "two"],
    "find epochs fraction": [*FIND, "--epochs", "1.5"],
    "find batch size zero": [*FIND, "--batch-size", "0"],
    "find lr zero": [*FIND, "--lr", "0"],
    "find lr negative": [*FIND, "--lr", "-1e-4"],
    "find lr inf": [*FIND, "--lr", "inf"],
    "find contrastive task with a batch of one": [*FIND, "--task", "fashion-mnist-simclr", "--batch-size", "1"],
    "verify a missing folder": ["verify", "{out}/nowhere"],
    "verify a file": ["verify", "{file}"],
    "find lr nan": [*FIND, "--lr", "nan"],
    "find max length zero": [*FIND, "--max-length", "0"],
    "find train examples zero": [*FIND, "--train-examples", "0"],
    "find negative seed": [*FIND, "--seed", "-1"],
    "find seed too large": [*FIND, "--seed", str(2**64)],
    "find weight decay negative": [*FIND, "--weight-decay", "-1"],
    "find weight decay nan": [*FIND, "--weight-decay", "nan"],
    "find weight decay inf": [*FIND, "--weight-decay", "inf"],
    "find warmup ratio nan": [*FIND, "--warmup-ratio", "nan"],
    "find warmup ratio negative": [*FIND, "--warmup-ratio", "-2"],
    "find warmup ratio above one": [*FIND, "--warmup-ratio", "2"],
    "find seeds zero": [*FIND, "--seeds", "0"],
    "find checkpoint every zero": [*FIND, "--checkpoint-every", "0"],
    # find: where runs go
    "find out is a file": ["find", "--model", "{tiny}", *TINY, "--out", "{file}"],
    "find out below a file": ["find", "--model", "{tiny}", *TINY, "--out", "{file}/runs"],
    "find out name too long": ["find", "--model", "{tiny}", *TINY, "--out", "{out}/" + LONG],
    "find bad setting on an existing run": ["find", "--model", "{tiny}", *TINY, "--lr", "nan", "--out", "{store}"],
    # transfer
    "transfer missing ticket": ["transfer", "--ticket", "{missing}", "--task", "rotten-tomatoes", "--out", "{out}"],
    "transfer ticket name too long": ["transfer", "--ticket", LONG, "--task", "rotten-tomatoes", "--out", "{out}"],
    "transfer corrupt ticket": ["transfer", "--ticket", "{corrupt}", "--task", "rotten-tomatoes", "--out", "{out}"],
    "transfer ticket without provenance": [
        "transfer",
        "--ticket",
        "{bare_mask}",
        "--task",
        "rotten-tomatoes",
        "--out",
        "{out}",
    ],
    "transfer round not complete": ["transfer", "--ticket", "{run}:7", "--task", "rotten-tomatoes", "--out", "{out}"],
    "transfer folder without rounds": [
        "transfer",
        "--ticket",
        "{empty_run}",
        "--task",
        "rotten-tomatoes",
        "--out",
        "{out}",
    ],
    "transfer unknown task": ["transfer", "--ticket", "{run}:1", "--task", "nope", "--out", "{out}"],
    "transfer to another model": [
        "transfer",
        "--ticket",
        "{run}:1",
        "--task",
        "rotten-tomatoes",
        "--model",
        "{other}",
        "--out",
        "{out}",
    ],
    "transfer to gpt-2": [
        "transfer",
        "--ticket",
        "{run}:1",
        "--task",
        "rotten-tomatoes",
        "--model",
        "{gpt2}",
        "--out",
        "{out}",
    ],
    "transfer lr nan": [*TRANSFER, "--lr", "nan"],
    "transfer warmup ratio negative": [*TRANSFER, "--warmup-ratio", "-2"],
    "transfer unknown granularity": [*TRANSFER, "--granularity", "4:4"],
    "transfer max length past the positions": [*TRANSFER, "--max-length", "512"],
    "transfer missing ticket option": ["transfer", "--task", "rotten-tomatoes", "--out", "{out}"],
    "transfer out is a file": [
        "transfer",
        "--ticket",
        "{run}:1",
        "--task",
        "rotten-tomatoes",
        *TINY,
        "--out",
        "{file}",
    ],
    "transfer bad setting into the existing store": [*TRANSFER[:-1], "{store}", "--lr", "inf"],
    # grid
    "grid one task": ["grid", "--tasks", "rotten-tomatoes", "--model", "{tiny}", *TINY, "--out", "{out}"],
    "grid same task twice": [
        "grid",
        "--tasks",
        "rotten-tomatoes,rotten-tomatoes",
        "--model",
        "{tiny}",
        *TINY,
        "--out",
        "{out}",
    ],
    "grid unknown task": ["grid", "--tasks", "rotten-tomatoes,nope", "--model", "{tiny}", *TINY, "--out", "{out}"],
    "grid target zero": [
        "grid",
        "--tasks",
        "rotten-tomatoes,mlm",
        "--model",
        "{tiny}",
        *TINY,
        "--target",
        "0",
        "--out",
        "{out}",
    ],
    "grid data without a task": [
        "grid",
        "--tasks",
        "rotten-tomatoes,mlm",
        "--model",
        "{tiny}",
        *TINY,
        "--data",
        "{missing}",
        "--out",
        "{out}",
    ],
    "grid data for another task": [
        "grid",
        "--tasks",
        "rotten-tomatoes,mlm",
        "--model",
        "{tiny}",
        *TINY,
        "--data",
        "squad={missing}",
        "--out",
        "{out}",
    ],
    "grid level without a round": [
        "grid",
        "--tasks",
        "rotten-tomatoes,mlm",
        "--model",
        "{tiny}",
        *TINY[:-1],
        "0.5",
        "--target",
        "0.3",
        "--out",
        "{out}",
    ],
    "grid lr inf": [
        "grid",
        "--tasks",
        "rotten-tomatoes,mlm",
        "--model",
        "{tiny}",
        *TINY,
        "--lr",
        "inf",
        "--out",
        "{out}",
    ],
    "grid out below a file": [
        "grid",
        "--tasks",
        "rotten-tomatoes,mlm",
        "--model",
        "{tiny}",
        *TINY,
        "--out",
        "{file}/runs",
    ],
    # earlybert
    "earlybert heads zero": [*EARLYBERT, "--heads", "0"],
    "earlybert heads one": [*EARLYBERT, "--heads", "1"],
    "earlybert heads text": [*EARLYBERT, "--heads", "half"],
    "earlybert heads empty a layer": [*EARLYBERT, "--heads", "0.8"],
    "earlybert ffn one": [*EARLYBERT, "--ffn", "1"],
    "earlybert ffn nan": [*EARLYBERT, "--ffn", "nan"],
    "earlybert l1 nan": [*EARLYBERT, "--l1", "nan"],
    "earlybert l1 inf": [*EARLYBERT, "--l1", "inf"],
    "earlybert l1 negative": [*EARLYBERT, "--l1", "-1"],
    "earlybert draw every zero": [*EARLYBERT, "--draw-every", "0"],
    "earlybert window zero": [*EARLYBERT, "--window", "0"],
    "earlybert threshold nan": [*EARLYBERT, "--threshold", "nan"],
    "earlybert threshold one": [*EARLYBERT, "--threshold", "1"],
    "earlybert lr inf": [*EARLYBERT, "--lr", "inf"],
    "earlybert gpt-2": ["earlybert", "--model", "{gpt2_padded}", "--train-examples", "16", "--out", "{out}"],
    "earlybert resnet": [
        "earlybert",
        "--model",
        "{resnet_model}",
        "--task",
        "fashion-mnist",
        "--data",
        "{fashion}",
        "--out",
        "{out}",
    ],
    "earlybert out is a file": [*EARLYBERT[:-1], "{file}"],
    # report
    "report missing run": ["report", "{missing}", "--out", "{out}"],
    "report run name too long": ["report", LONG, "--out", "{out}"],
    "report folder without runs": ["report", "{empty}", "--out", "{out}"],
    "report out is a file": ["report", "{store}", "--out", "{file}"],
    "report out below a file": ["report", "{store}", "--out", "{file}/report"],
    "report out name too long": ["report", "{store}", "--out", "{out}/" + LONG],
    "report metric without a task": ["report", "{store}", "--metric", "accuracy", "--out", "{out}"],
    "report metric of another task": ["report", "{store}", "--metric", "mlm=loss", "--out", "{out}"],
    "report unknown metric": ["report", "{store}", "--metric", "rotten-tomatoes=f1", "--out", "{out}"],
    "report no runs": ["report", "--out", "{out}"],
    # experiment: the command
    "experiment distill alpha above 1": recipe(distill={"alpha": 2.0}),
    "experiment distill unknown setting": recipe(distill={"hardness": 1.0}),
    "experiment unknown precision": recipe(tasks={"rotten-tomatoes": {"precision": "fp8"}}),
    "experiment unknown preset": ["experiment", "--preset", "huge", "--out", "{out}"],
    "experiment missing recipe": ["experiment", "--recipe", "{missing}", "--out", "{out}"],
    "experiment recipe name too long": ["experiment", "--recipe", LONG, "--out", "{out}"],
    "experiment preset and recipe": ["experiment", "--preset", "small", "--recipe", "{recipe}", "--out", "{out}"],
    "experiment seeds zero": ["experiment", "--recipe", "{recipe}", "--seeds", "0", "--out", "{out}"],
    "experiment unknown model": ["experiment", "--recipe", "{recipe}", "--model", "{missing}", "--out", "{out}"],
    "experiment out is a file": ["experiment", "--recipe", "{recipe}", "--out", "{file}"],
    "experiment out below a file": ["experiment", "--recipe", "{recipe}", "--out", "{file}/runs"],
    # where the units run: --executor ray and its options (Ray is not started for these)
    "find cpus per run without ray": [*FIND, "--cpus-per-run", "2"],
    "grid address without ray": [
        "grid",
        "--tasks",
        "rotten-tomatoes,mlm",
        "--model",
        "{tiny}",
        *TINY,
        "--address",
        "auto",
        "--out",
        "{out}",
    ],
    "experiment ray gpus per run above 1, not whole": [
        "experiment",
        "--recipe",
        "{recipe}",
        "--executor",
        "ray",
        "--gpus-per-run",
        "1.5",
        "--out",
        "{out}",
    ],
    "find ray address not host:port": [*FIND, "--executor", "ray", "--address", "head-node"],
    "find ray address where nothing answers": [*FIND, "--executor", "ray", "--address", "127.0.0.1:1"],
    # experiment: recipe files, one bad setting each
    "recipe not yaml": {"text": "model: [unclosed"},
    "recipe not a mapping": {"text": "- model\n- tasks\n"},
    "recipe unknown setting": recipe(epochs=3),
    "recipe without model": {k: v for k, v in RECIPE.items() if k != "model"},
    "recipe model a number": recipe(model=5),
    "recipe missing model": recipe(model="{missing}"),
    "recipe tasks text": recipe(tasks="rotten-tomatoes"),
    "recipe tasks empty": recipe(tasks={}),
    "recipe unknown task": recipe(tasks={"nope": {}}),
    "recipe task options text": recipe(tasks={"rotten-tomatoes": "fast"}),
    "recipe task unknown option": recipe(tasks={"rotten-tomatoes": {"bogus": 1}}),
    "recipe controls at without controls": recipe(controls_at=[0.5]),
    "recipe controls at off the schedule": recipe(controls=["random"], controls_at=[0.55]),
    "recipe task epochs text": recipe(tasks={"rotten-tomatoes": {"epochs": "two"}}),
    "recipe task lr nan": recipe(tasks={"rotten-tomatoes": {"learning_rate": float("nan")}}),
    "recipe task lr text": recipe(tasks={"rotten-tomatoes": {"learning_rate": "fast"}}),
    "recipe task data a number": recipe(tasks={"rotten-tomatoes": {"data": 5}}),
    "recipe task data missing": recipe(tasks={"rotten-tomatoes": {"data": "{missing}"}}),
    "recipe task max length past the positions": recipe(tasks={"rotten-tomatoes": {"epochs": 1, "max_length": 512}}),
    "recipe seeds text": recipe(seeds="three"),
    "recipe seeds zero": recipe(seeds=0),
    "recipe seeds boolean": recipe(seeds=True),
    "recipe seeds fraction": recipe(seeds=1.5),
    "recipe prune text": recipe(prune="abc"),
    "recipe prune sparsity two": recipe(prune={"sparsity": 2}),
    "recipe prune sparsity text": recipe(prune={"sparsity": "high"}),
    "recipe prune unknown field": recipe(prune={"sparsity": 0.1, "bogus": 1}),
    "recipe prune unknown schedule": recipe(prune={"sparsity": 0.1, "schedule": "cubic"}),
    "recipe prune rate text": recipe(prune={"sparsity": 0.1, "rate": "abc"}),
    "recipe prune unknown method": recipe(prune={"sparsity": 0.1, "method": "bogus"}),
    "recipe prune negative rewind step": recipe(prune={"sparsity": 0.1, "rewind_step": -1}),
    "recipe prune rewind head text": recipe(prune={"sparsity": 0.1, "rewind_head": "maybe"}),
    "recipe prune unknown granularity": recipe(prune={"sparsity": 0.1, "granularity": "blok:4x4"}),
    "recipe prune granularity a number": recipe(prune={"sparsity": 0.1, "granularity": 4}),
    "recipe prune n:m above the first level": recipe(prune={"sparsity": 0.1, "granularity": "2:4"}),
    "recipe controls text": recipe(controls="random"),
    "recipe unknown control": recipe(controls=["bogus"]),
    "recipe rewind steps text": recipe(rewind_steps="ten"),
    "recipe negative rewind step": recipe(rewind_steps=[-1]),
    "recipe transfer text": recipe(tasks=TWO_TASKS, transfer="abc"),
    "recipe transfer above one": recipe(tasks=TWO_TASKS, transfer=1.5),
    "recipe earlybert text": recipe(earlybert="abc"),
    "recipe earlybert l1 text": recipe(earlybert={"l1": "abc"}),
    "recipe earlybert l1 nan": recipe(earlybert={"l1": float("nan")}),
    "recipe earlybert heads two": recipe(earlybert={"heads": 2}),
    "recipe earlybert unknown field": recipe(earlybert={"bogus": 1}),
    "recipe pretrain text": recipe(pretrain="abc"),
    "recipe pretrain unknown field": recipe(pretrain={"methods": {"supervised": QUICK}, "bogus": 1}),
    "recipe pretrain unknown method": recipe(pretrain={"methods": {"bogus": QUICK}}),
    "recipe pretrain unknown architecture": recipe(
        pretrain={"architecture": "resnet9", "methods": {"supervised": QUICK}}
    ),
    "recipe pretrain method options text": recipe(pretrain={"methods": {"supervised": "fast"}}),
    "recipe pretrain epochs text": recipe(pretrain={"methods": {"supervised": {"epochs": "two"}}}),
    "recipe pretrain simclr batch of one": recipe(pretrain={"methods": {"simclr": {**QUICK, "batch_size": 1}}}),
    "recipe pretrain unknown ticket option": recipe(
        pretrain={"methods": {"supervised": QUICK}, "tickets": {"bogus": 1}}
    ),
    # pretrain
    "pretrain unknown method": [*PRETRAIN, "--method", "byol"],
    "pretrain unknown architecture": [*PRETRAIN, "--arch", "resnet9"],
    "pretrain simclr batch of one": [*PRETRAIN, "--method", "simclr", "--batch-size", "1"],
    "pretrain moco batch of one": [*PRETRAIN, "--method", "moco", "--batch-size", "1"],
    "pretrain epochs zero": [*PRETRAIN, "--epochs", "0"],
    "pretrain lr nan": [*PRETRAIN, "--lr", "nan"],
    "pretrain warmup ratio nan": [*PRETRAIN, "--warmup-ratio", "nan"],
    "pretrain weight decay negative": [*PRETRAIN, "--weight-decay", "-1"],
    "pretrain missing data": ["pretrain", "--data", "{missing}", "--out", "{out}"],
    "pretrain checkpoint every zero": [*PRETRAIN, "--checkpoint-every", "0"],
    "pretrain out is a file": [*PRETRAIN[:-1], "{file}"],
    "pretrain out below a file": [*PRETRAIN[:-1], "{file}/models"],
    # import-resnet
    "import missing weights": ["import-resnet", "{missing}", "--arch", "resnet-small", "--out", "{out}"],
    "import weights name too long": ["import-resnet", LONG, "--arch", "resnet-small", "--out", "{out}"],
    "import a pickle": ["import-resnet", "{pickle}", "--arch", "resnet-small", "--out", "{out}"],
    "import a text file": ["import-resnet", "{file}", "--arch", "resnet-small", "--out", "{out}"],
    "import a csv file": ["import-resnet", "{csv_text}", "--arch", "resnet-small", "--out", "{out}"],
    "import a line of words": ["import-resnet", "{words}", "--arch", "resnet-small", "--out", "{out}"],
    "import another architecture": ["import-resnet", "{resnet}", "--arch", "resnet18", "--out", "{out}"],
    "import wrong in channels": [*IMPORT[:-3], "3", "--out", "{out}"],
    "import in channels zero": [*IMPORT[:-3], "0", "--out", "{out}"],
    "import in channels negative": [*IMPORT[:-3], "-1", "--out", "{out}"],
    "import unknown architecture": ["import-resnet", "{resnet}", "--arch", "resnet9", "--out", "{out}"],
    "import without out": ["import-resnet", "{resnet}", "--arch", "resnet-small"],
    "import out exists": [*IMPORT[:-1], "{empty}"],
    "import out below a file": [*IMPORT[:-1], "{file}/model"],
    # apply
    "apply missing ticket": ["apply", "{missing}", "--model", "{tiny}", "--out", "{out}"],
    "apply corrupt ticket": ["apply", "{corrupt}", "--model", "{tiny}", "--out", "{out}"],
    "apply ticket of another model": ["apply", "{mask}", "--model", "{other}", "--out", "{out}"],
    "apply round not complete": ["apply", "{run}:7", "--model", "{tiny}", "--out", "{out}"],
    "apply gpt-2": ["apply", "{mask}", "--model", "{gpt2}", "--out", "{out}"],
    "apply truncated weights": ["apply", "{mask}", "--model", "{truncated}", "--out", "{out}"],
    "apply unknown model": ["apply", "{mask}", "--model", "bert-huge", "--out", "{out}"],
    "apply out exists": ["apply", "{mask}", "--model", "{tiny}", "--out", "{store}"],
    "apply out is a file": ["apply", "{mask}", "--model", "{tiny}", "--out", "{file}"],
    "apply out below a file": ["apply", "{mask}", "--model", "{tiny}", "--out", "{file}/model"],
    "apply out name too long": ["apply", "{mask}", "--model", "{tiny}", "--out", "{out}/" + LONG],
    # export
    "export missing ticket": ["export", "{missing}", "--out", "{out}"],
    "export corrupt ticket": ["export", "{corrupt}", "--model", "{tiny}", "--out", "{out}"],
    "export ticket of another model": ["export", "{mask}", "--model", "{other}", "--out", "{out}"],
    "export round not complete": ["export", "{run}:7", "--out", "{out}"],
    "export damaged round": ["export", "{damaged_run}", "--out", "{out}"],
    "export unknown format": ["export", "{run}", "--format", "csr", "--out", "{out}"],
    "export batch size 0": ["export", "{run}", "--batch-size", "0", "--out", "{out}"],
    "export length not a number": ["export", "{run}", "--length", "long", "--out", "{out}"],
    "export out exists": ["export", "{run}", "--out", "{store}"],
    "export out below a file": ["export", "{run}", "--out", "{file}/model"],
    "export out name too long": ["export", "{run}", "--out", "{out}/" + LONG],
    # ticket
    "ticket without an action": ["ticket"],
    "ticket unknown action": ["ticket", "list", "{mask}"],
    "ticket show without a ticket": ["ticket", "show"],
    "ticket show missing file": ["ticket", "show", "{missing}"],
    "ticket show a text file": ["ticket", "show", "{file}"],
    "ticket show corrupt file": ["ticket", "show", "{corrupt}"],
    "ticket show packed file with a flipped byte": ["ticket", "show", "{damaged_mask}"],
    "ticket show damaged round": ["ticket", "show", "{damaged_run}"],
    "ticket show round not complete": ["ticket", "show", "{run}:7"],
    "ticket show run without a complete round": ["ticket", "show", "{empty_run}"],
    "ticket show folder that is no run": ["ticket", "show", "{empty}"],
    "ticket show name too long": ["ticket", "show", LONG],
}


def fill(spec, names: dict[str, str]):
    """`spec` with every "{name}" in its strings replaced by that input's path."""
    if isinstance(spec, str):
        return spec.format(**names)
    if isinstance(spec, dict):
        return {key: fill(value, names) for key, value in spec.items()}
    if isinstance(spec, list):
        return [fill(value, names) for value in spec]
    return spec


def snapshot(folder: Path) -> dict[Path, str]:
    return {
        p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def inputs(tiny_model_dir, fashion_dir, one_thread, tmp_path_factory) -> dict[str, Path]:
    """Every file and folder the cases name: models (GPT-2, truncated weights, another BERT, a RoBERTa, a ResNet),
    weight and mask files, and an existing lottery run (`store` holds `run`)."""
    root = tmp_path_factory.mktemp("inputs")
    paths = {
        "root": root,
        "tiny": tiny_model_dir,
        "fashion": fashion_dir,
        "missing": root / "missing",
        "file": root / "a-file.txt",
        "empty": root / "empty",
    }
    paths["file"].write_text("not a folder\n")
    paths["csv_text"], paths["words"] = root / "rows.csv", root / "words.txt"
    paths["csv_text"].write_text("a,b,c\n")
    paths["words"].write_text("hello world\n")
    paths["two_rows"] = root / "two_rows.csv"  # too few for a train, a dev and a test example
    paths["two_rows"].write_text("category,text\nfresh,a fine film\nrotten,a dull film\n")
    paths["empty"].mkdir()
    tokenizer = AutoTokenizer.from_pretrained(asset_path("splade-tiny"))
    for name, pad in (("gpt2", None), ("gpt2_padded", "[PAD]")):
        paths[name] = root / name
        tokenizer.pad_token = pad
        tokenizer.save_pretrained(paths[name])
        GPT2Model(
            GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=tokenizer.vocab_size, n_positions=64)
        ).save_pretrained(paths[name])
    paths["truncated"] = root / "truncated"
    shutil.copytree(tiny_model_dir, paths["truncated"])
    weights = paths["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    paths["other"] = root / "other"
    BertModel(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(paths["other"])
    paths["roberta"] = root / "roberta"  # 34 positions, the first two reserved: inputs of up to 32 tokens
    tokenizer.save_pretrained(paths["roberta"])
    RobertaModel(
        RobertaConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=34,
            pad_token_id=1,
        )
    ).save_pretrained(paths["roberta"])
    resnet = ResNetModel(ResNetConfig.for_architecture("resnet-small", in_channels=1))
    paths["resnet"] = root / "resnet.safetensors"
    save_file(resnet.state_dict(), str(paths["resnet"]))
    paths["resnet_model"] = root / "resnet-model"
    resnet.save_pretrained(paths["resnet_model"])
    paths["pickle"] = root / "weights.pth"
    paths["pickle"].write_bytes(pickle.dumps({"conv1.weight": [[1.0]]}))
    paths["corrupt"] = root / "corrupt.safetensors"
    paths["corrupt"].write_bytes(b"\x00\x01 this is no mask")
    paths["bare_mask"] = root / "bare.safetensors"
    save_mask(paths["bare_mask"], ones_like(prunable_weights(BertModel.from_pretrained(tiny_model_dir))), {})
    paths["store"] = root / "store"
    paths["run"] = ticketlab.find(
        str(tiny_model_dir), sparsity=0.1, out=paths["store"], train_examples=16, batch_size=64, epochs=1, max_length=16
    ).path  # one step a round; evaluation in few, short batches
    paths["mask"] = paths["run"] / "round_01" / "mask.safetensors"
    paths["damaged_mask"] = shutil.copy(paths["mask"], root / "damaged.safetensors")
    flip(paths["damaged_mask"])  # outside any run: only the file's own checks can find it
    paths["damaged_run"] = shutil.copytree(paths["run"], root / "damaged-store" / paths["run"].name)
    flip(paths["damaged_run"] / "round_01" / "mask.safetensors")
    paths["empty_run"] = root / "empty-run"
    paths["empty_run"].mkdir()
    shutil.copy(paths["run"] / "config.json", paths["empty_run"])
    paths["recipe"] = root / "recipe.yaml"
    paths["recipe"].write_text(yaml.safe_dump(fill(RECIPE, {name: str(path) for name, path in paths.items()})))
    return paths


@pytest.fixture(scope="module")
def untouched(inputs) -> dict[Path, str]:
    """The digest of every input file: no case may change one."""
    return snapshot(inputs["root"])


@pytest.mark.slow  # a lottery run in its inputs, then every case through the CLI
@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_one_line_and_changes_nothing(case, inputs, untouched, tmp_path, monkeypatch, capfd, caplog):
    work = tmp_path / "work"  # the current folder: nothing may appear in it (--out is work/out unless a case says)
    work.mkdir()
    monkeypatch.chdir(work)
    names = {name: str(path) for name, path in inputs.items()} | {"out": str(work / "out")}
    spec = fill(CASES[case], names)
    if isinstance(spec, dict):
        recipe_file = tmp_path / "recipe.yaml"
        recipe_file.write_text(spec["text"] if "text" in spec else yaml.safe_dump(spec))
        argv = ["experiment", "--recipe", str(recipe_file), "--out", names["out"]]
    else:
        argv = spec
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    stderr = capfd.readouterr().err.splitlines()
    shown = stderr + [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert code not in (0, None), shown
    assert len(shown) == 1 and shown[0].startswith("ticketlab"), shown
    assert list(work.iterdir()) == []
    assert snapshot(inputs["root"]) == untouched


def test_the_table_covers_every_verb():
    verbs = {spec[0] if isinstance(spec, list) and spec else "experiment" for spec in CASES.values()}
    assert {
        "find",
        "transfer",
        "grid",
        "earlybert",
        "report",
        "experiment",
        "pretrain",
        "import-resnet",
        "apply",
        "export",
        "tasks",
        "ticket",
    } <= verbs
    assert len(CASES) >= 110


def test_max_positions_minds_offset_position_embeddings(tmp_path):
    """BERT uses every position embedding; RoBERTa reserves the first pad_token_id + 1 of them."""
    BertConfig(max_position_embeddings=128).save_pretrained(tmp_path / "bert")
    RobertaConfig(max_position_embeddings=514, pad_token_id=1).save_pretrained(tmp_path / "roberta")
    assert max_positions(tmp_path / "bert") == 128
    assert max_positions(tmp_path / "roberta") == 512
