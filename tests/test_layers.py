"""The package's import floors: every module of ticketlab has a floor, none imports from a floor above its own (read
from the source with ast, imports inside functions included), the parts the floors list import each other in one
direction only, and no test module imports another."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ticketlab"

# Bottom to top; a module may import from its own floor and those below. A name stands for the module or package of
# that dotted path (relative to ticketlab) and all it holds; the longest listed name that covers a module decides.
FLOORS = (
    ("errors", "atomic", "registry", "hardware", "masks", "rice", "arms", "assets", "catalog", "lazy"),
    (
        "pruning",
        "train.batches",
        "pretraining",
    ),  # pretraining: its parts (augment, contrastive); the workflow: pretrain
    ("config",),
    ("train", "models", "tasks", "store"),
    ("distillation", "controls", "api"),  # api: reading a ticket and putting it on a model, which workflows use too
    ("lottery", "earlybert", "pretrain", "export"),
    ("report", "experiment", "plan", "recipe", "executors", "cli", "__init__", "__main__"),
)
FLOOR = {name: floor for floor, names in enumerate(FLOORS) for name in names}


def module_name(path: Path) -> str:
    """The dotted name of a module file relative to ticketlab ("__init__" for the package itself)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def listed(name: str) -> str | None:
    """The longest name of FLOORS covering `name`, or None."""
    parts = name.split(".")
    return next((".".join(parts[:end]) for end in range(len(parts), 0, -1) if ".".join(parts[:end]) in FLOOR), None)


def floor_of(name: str) -> int | None:
    unit = listed(name)
    return None if unit is None else FLOOR[unit]


def imported(path: Path) -> set[str]:
    """What a module of ticketlab imports from ticketlab, as dotted names relative to ticketlab (a `from X import n`
    counts as X.n: the longest listed name then decides whether n is a module or a name in X)."""
    package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    if package == ["__init__"]:
        package = []
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "ticketlab"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["ticketlab", *package[: len(package) - node.level + 1]]
                source = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").split(".")[0] == "ticketlab":
                source = node.module
            else:
                continue
            found |= {f"{source}.{alias.name}" for alias in node.names}
    return {name.removeprefix("ticketlab").removeprefix(".") or "__init__" for name in found}


def test_every_module_has_a_floor():
    unplaced = [module_name(path) for path in sorted(PACKAGE.rglob("*.py")) if floor_of(module_name(path)) is None]
    assert unplaced == [], f"modules missing from FLOORS: {unplaced}"


def test_no_module_imports_from_a_floor_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        own = floor_of(name)
        for target in sorted(imported(path)):
            target_floor = floor_of(target)
            if own is not None and target_floor is not None and target_floor > own:
                upward.append(f"{name} (floor {own}) imports {target} (floor {target_floor})")
    assert upward == [], "imports from a higher floor:\n" + "\n".join(upward)


def test_no_test_module_imports_another():
    tests = Path(__file__).resolve().parent
    modules = {path.stem for path in tests.glob("test_*.py")}
    shared = []
    for path in sorted(tests.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            shared += [f"{path.name} imports {name}" for name in names if name.split(".")[-1] in modules]
    assert shared == [], "test modules share code through helpers.py, not each other:\n" + "\n".join(shared)


def test_the_listed_parts_import_each_other_in_one_direction_only():
    """Modules of one floor may import each other, but no two of the parts FLOORS lists form a cycle (lottery imports
    no earlybert while earlybert imports lottery: no cycle that works only by import order)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = listed(module_name(path))
        graph.setdefault(unit, set()).update(listed(target) for target in imported(path))
    cycles = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph.get(node, set()) - {node}):
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == [], "import cycles between parts:\n" + "\n".join(cycles)
