"""The names ticketlab offers, with what each does: tasks, controls, ticket finders, export formats, architectures,
embedded models, pre-training methods, presets. Only the standard library and ticketlab.arms, so that the command's
parser, and with it `ticketlab --help`, loads without torch. Each registry of the code registers exactly the names
listed here (Registry's `names`; tests/test_catalog.py checks that none is missing)."""

from __future__ import annotations

from pathlib import Path

from .arms import EARLY_BIRD, GMP, IMP, INVERTED, NOISE, ONE_SHOT, RANDOM, RANDOM_PER_MATRIX, REINIT, SHUFFLE, WANDA

# in alphabetical order, as their registries list them
TASKS = tuple(
    sorted(
        (
            *("rotten-tomatoes", "squad", "mlm"),
            *("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"),  # GLUE
            *("fashion-mnist", "fashion-mnist-simclr", "fashion-mnist-moco", "mnist", "digits", "images"),
        )
    )
)
CONTROLS = tuple(sorted((ONE_SHOT, RANDOM, RANDOM_PER_MATRIX, REINIT, SHUFFLE, NOISE, INVERTED)))
FINDERS = {  # name -> what it does
    EARLY_BIRD: "IMP whose rounds take the next mask once its draw has settled",
    GMP: "the masks one gradual magnitude pruning run crosses",
    IMP: "iterative magnitude pruning, each round from the last one's weights",
    ONE_SHOT: "magnitude pruning of the fine-tuned dense weights",
    WANDA: "|w| x input norm per output row, on the fine-tuned dense model",
}
FINDER_SETTINGS = {  # name -> the PruneConfig fields that only this finder reads
    EARLY_BIRD: ("draw_every", "settle_window", "settle_threshold", "final_only"),
    WANDA: ("calibration_examples",),
    GMP: ("gmp_start", "gmp_end", "gmp_prunings"),
}
FORMATS = {  # an export's format -> what it holds (ticketlab.export.formats)
    "dense": "the zeros baked into a plain Hugging Face model",
    "sparse": "each pruned linear layer through the fastest kernel on this machine (same outputs to 1e-5)",
    "int8": "dense, every linear layer dynamically quantized to INT8",
    "bf16": "dense, the weights in bf16 (a CPU with native bf16: AMX-BF16 or AVX512-BF16; close to fp32, not exact)",
    "sparse-int8": "sparse, with INT8 instead of fp32 for the layers that run dense",
    "sparse-bf16": "sparse, with bf16 kernels besides the exact ones, bf16 for the layers that run dense (a CPU with "
    "native bf16: AMX-BF16 or AVX512-BF16; close to fp32, not exact)",
    "onnx": "dense, as model.onnx for ONNX Runtime",
    "compressed": "each pruned matrix as a bitmask and its kept values (load_sparse expands it; same outputs)",
    "compressed-int8": "compressed, with the kept values and every other matrix (the embeddings) in INT8, a scale "
    "per row (load_sparse expands it to fp32; close to the masked model, not exact)",
}
SCOPES = ("layers", "global", "per-matrix")  # what one magnitude ranking covers (ticketlab.pruning.magnitude)
EMBEDDED_MODELS = ("splade-tiny", "minilm-l6")
LAYOUTS = {  # ResNet architecture name -> ResNetConfig fields (ticketlab.models.vision)
    "resnet18": {"block": "basic", "layers": [2, 2, 2, 2], "widths": [64, 128, 256, 512], "small_stem": False},
    "resnet50": {"block": "bottleneck", "layers": [3, 4, 6, 3], "widths": [64, 128, 256, 512], "small_stem": False},
    "resnet-small": {"block": "basic", "layers": [2, 2, 2], "widths": [16, 32, 64], "small_stem": True},
}
PRETRAINING_TASKS = {  # pre-training method -> the task it trains on (ticketlab.pretrain)
    "supervised": "fashion-mnist",
    "simclr": "fashion-mnist-simclr",
    "moco": "fashion-mnist-moco",
}
RECIPES = Path(__file__).parent / "recipes"  # the presets: a recipe file each


def presets() -> list[str]:
    """The names of the recipes that ship with ticketlab (`--preset`)."""
    return sorted(path.stem for path in RECIPES.glob("*.yaml"))
