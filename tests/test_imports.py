"""No import circle among the node's own modules: every `import` and `from ... import` in the
source of each package under `libs/*/src` and `services/*/src`, at module level or inside a
function (a late import is still a circle), read with `ast`, makes one graph; any strongly
connected part of more than one module fails, named."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("libs/*/src"), *ROOT.glob("services/*/src")])


def our_modules(sources: list[Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages under `sources`."""
    found: dict[str, Path] = {}
    for src in sources:
        for path in src.rglob("*.py"):
            parts = list(path.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that module `name` (at `path`) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from pkg import module` imports the module; `from pkg import name`, pkg.
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports."""
    return {name: imported(name, path, modules) for name, path in modules.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_a_circle_when_there_is_one(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def late():\n    from .c import x\n")
    (package / "c.py").write_text("import pkg.a\nx = 1\n")
    (package / "d.py").write_text("from pkg.a import something\n")
    edges = graph(our_modules([tmp_path]))
    assert edges["pkg.d"] == {"pkg.a"}
    assert circles(edges) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_our_modules_import_each_other_without_circles() -> None:
    modules = our_modules(SOURCES)
    assert {"csdr_tiler.app", "csdr_ingest.jobs", "csdr_access"} <= modules.keys()
    edges = graph(modules)
    assert sum(len(e) for e in edges.values()) > 100, "the walk found our imports"
    if found := circles(edges):
        pytest.fail("import circles: " + "; ".join(" <-> ".join(c) for c in found))
