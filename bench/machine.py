"""Machine facts printed with every benchmark result, so numbers in docs/performance.md carry their context."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from importlib import metadata


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = "unknown"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem_gb = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("apache-airflow", "moto", "boto3", "duckdb", "apache-flink"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem_gb,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        **versions,
    }


def print_machine() -> None:
    print("| machine | |\n|---|---|")
    for key, value in machine_info().items():
        print(f"| {key} | {value} |")
    print()


def median(values: list[float]) -> float:
    return statistics.median(values)
