"""Source trees of earlier commits, for benchmarks that run before and after in the same run."""

from __future__ import annotations

import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def extract_tree(ref: str, work: Path) -> Path:
    """``include``, ``localdev`` and ``bench`` of commit ``ref`` under ``work/tree-<ref>`` (extracted once)."""
    tree = work / f"tree-{ref}"
    if not tree.exists():
        tree.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", ref, "include", "localdev", "bench"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree
