"""Packages whose names are imported on first use (PEP 562), so that `import ticketlab` and the command's help load
neither torch nor transformers."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Mapping


class _LazyPackage(types.ModuleType):
    """A package some of whose exported names are also the names of its submodules (ticketlab.earlybert, the function
    and the package; earlybert.compact): the import system sets a package's attribute to each submodule it loads,
    which must not hide the exported function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_lazy_names", ()):
            return  # the submodule stays reachable through sys.modules, as every import statement finds it
        super().__setattr__(name, value)


def export_lazily(package: str, exports: Mapping[str, tuple[str, ...]]) -> None:
    """Make `package` export `exports` (its submodule, relative -> the names taken from it), each imported on first
    use."""
    module = sys.modules[package]
    where = {name: submodule for submodule, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        module.__dict__[name] = value
        return value

    module.__dict__.update(__getattr__=__getattr__, __all__=sorted(where), _lazy_names=frozenset(where))
    module.__class__ = _LazyPackage
