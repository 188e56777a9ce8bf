"""The import graph of the package: no private name imported across packages, no import cycle.

Read from the source with ``ast`` (lazy imports inside functions count; ``TYPE_CHECKING``
blocks do not), so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hepad

ROOT = Path(hepad.__file__).parent
#: cycles known and owned elsewhere, to be removed (each entry: the sorted modules of one cycle)
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(mods: dict[str, Path]):
    """(edges module -> imported modules, [(importer, module, private name)])."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for m, p in mods.items():
        is_pkg = p.name == "__init__.py"
        tree = ast.parse(p.read_text())
        skip = set()
        for n in ast.walk(tree):
            if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                skip.update(id(x) for b in n.body for x in ast.walk(b))
        for node in ast.walk(tree):
            if id(node) in skip or not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = m.split(".") if is_pkg else m.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("hepad"):
                continue
            for a in node.names:
                full = f"{target}.{a.name}"
                if _private_module_outside(m, is_pkg, full if full in mods else target):
                    private.append((m, target, a.name))
                    continue
                if full in mods:
                    edges[m].add(full)
                    continue
                if target in mods:
                    edges[m].add(target)
                if a.name.startswith("_") and not a.name.startswith("__"):
                    own = m if is_pkg else m.rsplit(".", 1)[0]
                    theirs = target if mods.get(target, Path()).name == "__init__.py" else target.rsplit(".", 1)[0]
                    if own == "hepad" or not (theirs == own or theirs.startswith(own + ".")):
                        private.append((m, target, a.name))
    return edges, private


def _private_module_outside(importer: str, is_pkg: bool, module: str) -> bool:
    """True when ``module`` is (inside) a ``_private`` module of a package ``importer`` is not in."""
    own = importer if is_pkg else importer.rsplit(".", 1)[0]
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            owner = ".".join(parts[:i])
            return not (own == owner or own.startswith(owner + "."))
    return False


def _cycles(edges: dict[str, set[str]]) -> set[tuple[str, ...]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: set[tuple[str, ...]] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.add(tuple(sorted(comp)))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_private_name_is_imported_from_another_package():
    _, private = _imports(_modules())
    assert not private, "private names imported across packages: " + "; ".join(
        f"{m} imports {n} from {t}" for m, t, n in private)


def test_no_import_cycle():
    edges, _ = _imports(_modules())
    cycles = _cycles(edges) - KNOWN_CYCLES
    assert not cycles, f"import cycles: {sorted(cycles)}"


def test_the_checker_sees_a_cycle_and_a_private_import():
    """The checks can fail: a planted cycle and a planted private import are found."""
    edges = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert _cycles(edges) == {("a", "b")}
    assert _private_module_outside("hepad.cli._deploy", False, "hepad.export._resources")
    assert not _private_module_outside("hepad.export.hls", False, "hepad.export._resources")
    assert not _private_module_outside("hepad.cli._io", False, "hepad._outputs")  # the top package's own
    mods = _modules()
    edges, _ = _imports(mods)
    assert "hepad.partitions" in edges["hepad.scoring"]  # scoring runs on the partition layer
    assert "hepad.scoring" not in edges["hepad.distributed"]  # and distributed no longer reaches into it
