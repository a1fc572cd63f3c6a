"""Reading what a job committed: the part files of each local sink, and their rows."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from localdev.flink_runner.job_dir import FlinkJobError

#: Sub-directories of a local output directory, one per sink (see flink_job.SINK_DIRS).
OUTPUT_TABLES = ("sessions", "metrics", "late_events", "rejected_events")


def committed_files(output_dir: str | os.PathLike, table: str) -> list[Path]:
    """Committed part files of one sink (in-progress and marker files start with '.' or '_')."""
    if table not in OUTPUT_TABLES:
        raise ValueError(f"table must be one of {OUTPUT_TABLES}, got {table!r}")
    root = Path(output_dir) / table
    if not root.exists():
        return []
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.startswith((".", "_"))
        and not any(part.startswith(".") for part in p.parts)
    )


def read_rows(output_dir: str | os.PathLike, table: str) -> list[dict[str, Any]]:
    """All committed rows of one sink (JSON lines)."""
    rows: list[dict[str, Any]] = []
    for path in committed_files(output_dir, table):
        with open(path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise FlinkJobError(f"{path} line {line_no} is not JSON: {exc}") from None
    return rows
