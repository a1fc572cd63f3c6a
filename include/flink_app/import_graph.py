"""Static import graph of the project's own Python modules, read from the source with :mod:`ast`.

Nothing is imported or executed, so a module needing PyFlink, DuckDB or AWS can be inspected anywhere.
:mod:`include.flink_app.package` derives the Managed Flink zip from its entry point's import closure with
it, and ``tests/test_import_boundaries.py`` keeps the product free of local tooling and the graph acyclic.

Every ``import``/``from ... import`` counts, at module level or inside a function (a function-level import
still runs when the function does), as do ``importlib.import_module``/``__import__`` calls with a literal
name. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: module name -> {imported module name -> line of the first import}
Graph = dict[str, dict[str, int]]


class ImportGraphError(ValueError):
    """A source file cannot be parsed or a relative import leaves its top-level package; names file and line."""


@dataclass(frozen=True)
class ImportRef:
    """One import statement, resolved to absolute names: ``module`` and, for ``from`` imports, ``names``."""

    module: str
    names: tuple[str, ...]
    line: int


def module_index(search_dir: Path, tops: Iterable[str] | None = None) -> dict[str, Path]:
    """Dotted module name -> source file for every ``.py`` under ``search_dir`` as ``sys.path`` would see it.

    ``tops`` limits the index to these top-level packages/modules (all of them when ``None``).
    """
    search_dir = Path(search_dir)
    wanted = None if tops is None else set(tops)
    index: dict[str, Path] = {}
    for path in sorted(search_dir.rglob("*.py")):
        parts = list(path.relative_to(search_dir).with_suffix("").parts)
        if "__pycache__" in parts or any(not p.isidentifier() for p in parts):
            continue
        if wanted is not None and parts[0] not in wanted:
            continue
        if parts[-1] == "__init__":
            parts.pop()
            if not parts:
                continue
        index[".".join(parts)] = path
    return index


def _resolve(module: str | None, level: int, package: str, path: Path, line: int) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".") if package else []
    if level - 1 >= len(parts):
        raise ImportGraphError(f"{path}:{line}: relative import (level {level}) leaves the top-level package")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _literal_import(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str) and not first.value.startswith("."):
        return first.value
    return None


def imports_of(path: Path, module: str) -> list[ImportRef]:
    """Every import in the file of ``module`` (any nesting level), relative ones made absolute."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise ImportGraphError(f"{path}: cannot parse: {exc}") from None
    package = module if Path(path).name == "__init__.py" else module.rpartition(".")[0]
    refs: list[ImportRef] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            refs += [ImportRef(alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, package, path, node.lineno)
            refs.append(ImportRef(base, tuple(alias.name for alias in node.names), node.lineno))
        elif isinstance(node, ast.Call) and (name := _literal_import(node)):
            refs.append(ImportRef(name, (), node.lineno))
    return sorted(refs, key=lambda r: (r.line, r.module, r.names))


def targets(ref: ImportRef, index: Mapping[str, Path]) -> list[str]:
    """The indexed modules an import loads: submodules named by a ``from`` import, else the longest
    indexed prefix of the imported name; empty for a module outside the index (stdlib, third party)."""
    found = [f"{ref.module}.{name}" for name in ref.names if f"{ref.module}.{name}" in index]
    if not ref.names or len(found) < len(ref.names):
        module = ref.module
        while module and module not in index:
            module = module.rpartition(".")[0]
        if module:
            found.append(module)
    return sorted(set(found))


def import_graph(index: Mapping[str, Path]) -> Graph:
    """Edges between the indexed modules (imports of anything outside the index are left out)."""
    graph: Graph = {}
    for module, path in sorted(index.items()):
        edges: dict[str, int] = {}
        for ref in imports_of(path, module):
            for target in targets(ref, index):
                if target != module:
                    edges.setdefault(target, ref.line)
        graph[module] = edges
    return graph


def external_imports(index: Mapping[str, Path], modules: Iterable[str]) -> dict[str, set[str]]:
    """Top-level names the given modules import from outside the index -> the modules importing them."""
    tops = {name.split(".")[0] for name in index}
    found: dict[str, set[str]] = {}
    for module in modules:
        for ref in imports_of(index[module], module):
            top = ref.module.split(".")[0]
            if top and top not in tops:
                found.setdefault(top, set()).add(module)
    return found


def _parents(module: str, index: Mapping[str, Path]) -> list[str]:
    parts = module.split(".")
    return [p for i in range(1, len(parts)) if (p := ".".join(parts[:i])) in index]


def closure(graph: Mapping[str, Mapping[str, int]], index: Mapping[str, Path], start: str) -> dict[str, str]:
    """Modules loaded by importing ``start`` (with the parent packages Python runs first) -> the module
    that brought each in (``start`` maps to itself), so a surprise can be traced back."""
    if start not in index:
        raise ImportGraphError(f"module {start!r} is not among the indexed sources")
    via = {start: start}
    todo = [start]
    while todo:
        module = todo.pop()
        for target in [*_parents(module, index), *sorted(graph.get(module, {}))]:
            if target not in via:
                via[target] = module
                todo.append(target)
    return via


def chain(via: Mapping[str, str], module: str) -> list[str]:
    """The import chain from the closure's start to ``module``."""
    path = [module]
    while via[path[-1]] != path[-1]:
        path.append(via[path[-1]])
    return path[::-1]


def cycles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """One concrete cycle ``[a, b, ..., a]`` per strongly connected component that has one (Tarjan)."""
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index_of[node] = low[node] = len(index_of)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, {})):
            if target not in index_of:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index_of[target])
        if low[node] == index_of[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, {}):
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index_of:
            visit(node)
    return [_cycle_in(graph, component) for component in sorted(components)]


def _cycle_in(graph: Mapping[str, Mapping[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside the component)."""
    members = set(component)
    start = component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph.get(node, {})):
                if target not in members:
                    continue
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *path[::-1][1:], start] if len(path) > 1 else [start, start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in its component {component}")


def describe_cycle(
    graph: Mapping[str, Mapping[str, int]], index: Mapping[str, Path], cycle: list[str]
) -> str:
    """``a (path:line) -> b (path:line) -> a``: where each edge of a cycle is written."""
    steps = [f"{a} ({index[a]}:{graph[a][b]}) ->" for a, b in zip(cycle, cycle[1:], strict=False)]
    return " ".join([*steps, cycle[-1]])
