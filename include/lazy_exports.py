"""Package names imported on first use, so a DAG file can import a package's light module (its params) at parse
time without loading the heavy ones (DuckDB, pyarrow, the Kinesis writer) that the same package exports."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(namespace: dict[str, Any], exports: dict[str, str]) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for a package whose ``globals()`` is ``namespace``: ``exports`` maps each
    exported name to the module defining it; a name is imported once, then cached in the package."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
