"""The stages call one way: no module imports a part that stands above it, and no import cycle exists.

Imports are read from the source (module level, inside functions and under TYPE_CHECKING alike), so a lazy import
that goes upwards fails here as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sora_search"

# Parts from the bottom up; a part may import its own modules and those of lower layers only.
LAYERS: list[set[str]] = [
    {"errors", "types", "params", "threads", "_faults", "containers", "render"},
    {"scan", "decode", "encoder", "store"},
    {"index", "embed", "identity", "thumbs"},
    {"query", "cluster"},
    {"library"},
    {"report", "serve"},  # front ends that the CLI starts; they never import each other or the CLI
    {"cli"},
    {"__main__"},
]
LAYER_OF = {part: n for n, parts in enumerate(LAYERS) for part in parts}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out[".".join(["sora_search", *parts])] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The sora_search modules ``name`` imports (``from x import y`` counts x.y when that is a module)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known}
    found.discard(name)
    return found


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_every_part_has_a_layer():
    parts = {_part(m) for m in _modules()} - {""}
    assert parts <= set(LAYER_OF), f"parts with no layer: {sorted(parts - set(LAYER_OF))}"


def test_no_module_imports_a_part_above_it_or_beside_it():
    wrong = []
    for module, targets in _graph().items():
        if module == "sora_search":  # the package's lazy re-exports of the public names
            continue
        here = _part(module)
        for target in targets:
            there = _part(target)
            if there and there != here and LAYER_OF[there] >= LAYER_OF[here]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    # A package's __init__ is the facade of its own modules: a module reaching a sibling through it is no cycle.
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in _graph().items()}
    graph.pop("sora_search", None)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])


def test_the_checks_see_an_upward_import(tmp_path):
    """The graph reader finds lazy and TYPE_CHECKING imports, so the layering test can fail."""
    src = tmp_path / "store.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sora_search.library import X\n"
                   "def f():\n    from sora_search import query\n")
    known = {"sora_search.library", "sora_search.query", "sora_search.store"}
    assert _imports("sora_search.store", src, known) == {"sora_search.library", "sora_search.query"}
