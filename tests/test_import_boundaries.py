"""Import boundaries: the product (include/, dags/, plugins/) never imports local tooling, and the project's
modules import each other without cycles. Read from the source with ast (include.flink_app.import_graph)."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.flink_app import import_graph

REPO = Path(__file__).resolve().parents[1]
#: What an Airflow deployment ships, and the local-only packages it must not import.
PRODUCT_DIRS = ("include", "dags", "plugins")
LOCAL_ONLY = ("localdev", "tests", "bench")


def project_index(repo: Path = REPO) -> dict[str, Path]:
    """Every module of the project as Python sees it: include, localdev and bench from the repository root,
    the DAG files from dags/ and the plugins from plugins/ (Airflow puts those folders on sys.path)."""
    index = import_graph.module_index(repo, ["include", "localdev", "bench"])
    for folder in ("dags", "plugins"):
        for name, path in import_graph.module_index(repo / folder).items():
            if name in index:
                raise AssertionError(f"module {name!r} is both {index[name]} and {path}")
            index[name] = path
    return index


def _module_name(path: Path, repo: Path) -> str:
    relative = path.relative_to(repo)
    if relative.parts[0] in ("dags", "plugins"):
        relative = relative.relative_to(relative.parts[0])
    parts = list(relative.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def local_imports(repo: Path = REPO, product_dirs=PRODUCT_DIRS, local_only=LOCAL_ONLY) -> list[str]:
    """``file:line imports name`` for every import of a local-only package from a product file (every
    ``.py`` file under the product folders, whatever its name)."""
    found = []
    for folder in product_dirs:
        for path in sorted((repo / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            for ref in import_graph.imports_of(path, _module_name(path, repo)):
                if ref.module.split(".")[0] in local_only:
                    found.append(f"{path.relative_to(repo)}:{ref.line} imports {ref.module}")
    return found


def test_product_code_never_imports_local_tooling():
    scanned = [p for d in PRODUCT_DIRS for p in (REPO / d).rglob("*.py") if "__pycache__" not in p.parts]
    assert len(scanned) > 50, f"expected the product's sources under {PRODUCT_DIRS}, found {len(scanned)}"
    violations = local_imports()
    assert violations == [], "product code imports local-only packages:\n" + "\n".join(violations)


def test_project_modules_import_each_other_without_cycles():
    index = project_index()
    graph = import_graph.import_graph(index)
    assert {"include.config", "localdev.cli", "bench.flink_bench", "clickstream_setup"} <= set(graph)
    assert sum(len(edges) for edges in graph.values()) > 100, "the graph lost its edges"
    found = import_graph.cycles(graph)
    assert found == [], "import cycles:\n" + "\n".join(
        import_graph.describe_cycle(graph, index, cycle) for cycle in found
    )


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


#: A cycle closed only by a function-level relative import: pkg.a -> pkg.b -> pkg.sub.c -> pkg.a.
CYCLE = {
    "pkg/__init__.py": "VERSION = 1\n",
    "pkg/a.py": "from pkg import b\n",
    "pkg/b.py": "import json\n\n\ndef later():\n    from .sub import c\n    return c\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/c.py": "import importlib\n\nfrom .. import VERSION\n\nA = importlib.import_module('pkg.a')\n",
}


def test_graph_resolves_relative_function_level_and_literal_imports(tmp_path):
    index = import_graph.module_index(_tree(tmp_path, CYCLE))
    assert import_graph.import_graph(index) == {
        "pkg": {},
        "pkg.a": {"pkg.b": 1},  # `from pkg import b`: the submodule, not the package
        "pkg.b": {"pkg.sub.c": 5},  # inside a function, relative; json is outside the index
        "pkg.sub": {},
        "pkg.sub.c": {
            "pkg": 3,
            "pkg.a": 5,
        },  # `from .. import VERSION` is the package; import_module('pkg.a')
    }


def test_cycles_are_found_and_described_with_file_and_line(tmp_path):
    index = import_graph.module_index(_tree(tmp_path, CYCLE))
    graph = import_graph.import_graph(index)
    assert import_graph.cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    assert import_graph.describe_cycle(graph, index, ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]) == (
        f"pkg.a ({tmp_path}/pkg/a.py:1) -> pkg.b ({tmp_path}/pkg/b.py:5) -> "
        f"pkg.sub.c ({tmp_path}/pkg/sub/c.py:5) -> pkg.a"
    )
    (tmp_path / "pkg/b.py").write_text("import json\n")  # drop the function-level import: no cycle left
    assert import_graph.cycles(import_graph.import_graph(index)) == []


def test_cycles_reports_one_cycle_per_tangle_and_self_imports(tmp_path):
    graph = {
        "a": {"b": 1},
        "b": {"a": 1, "c": 1},
        "c": {},
        "d": {"d": 1},
        "e": {"f": 1},
        "f": {"g": 1},
        "g": {"e": 1},
    }
    assert import_graph.cycles(graph) == [["a", "b", "a"], ["d", "d"], ["e", "f", "g", "e"]]


def test_local_imports_are_found_at_any_level_and_by_literal_name(tmp_path):
    repo = _tree(
        tmp_path,
        {
            "include/__init__.py": "",
            "include/ok.py": "from include import other\nimport localdevice\n",
            "include/job.py": "def run():\n    from localdev.aws import gateway\n",
            "dags/my_dag.py": "import importlib\nimportlib.import_module('tests.helpers')\n",
            "plugins/thing/__init__.py": "from bench import machine\n",
            "localdev/__init__.py": "import include\n",
        },
    )
    assert local_imports(repo) == [
        "include/job.py:2 imports localdev.aws",
        "dags/my_dag.py:2 imports tests.helpers",
        "plugins/thing/__init__.py:1 imports bench",
    ]


def test_relative_import_above_the_top_package_is_an_error(tmp_path):
    index = import_graph.module_index(
        _tree(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from ... import x\n"})
    )
    with pytest.raises(import_graph.ImportGraphError, match=r"a\.py:1: relative import \(level 3\) leaves"):
        import_graph.import_graph(index)
