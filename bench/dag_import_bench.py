"""DAG file import time, each file in a fresh interpreter after Airflow itself is imported.

Budget: 200 ms per file (the integrity test only fails above 2 s, which catches network calls and heavy
imports; this benchmark tracks the real figure). Median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bench.machine import median, print_machine

REPO = Path(__file__).resolve().parent.parent
BUDGET_MS = 200.0
PROBE = """
import sys, time, importlib.util, airflow.sdk, airflow.timetables.interval
{preload}
sys.path.insert(0, {repo!r})
t = time.perf_counter()
spec = importlib.util.spec_from_file_location("dagfile", {path!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
print((time.perf_counter() - t) * 1000)
"""


#: A DAG processor that has parsed one amazon-provider DAG keeps the provider imported; the second column
#: shows that steady state.
PRELOAD = (
    "import airflow.providers.amazon.aws.hooks.s3, airflow.providers.amazon.aws.operators.kinesis_analytics"
)


def measure(path: Path, runs: int, preload: str = "") -> list[float]:
    out = []
    for _ in range(runs):
        code = PROBE.format(repo=str(REPO), path=str(path), preload=preload)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out.append(float(result.stdout.strip().splitlines()[-1]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    print_machine()
    print(
        f"| DAG file | cold median (ms) | cold min–max | provider preloaded median (ms) | budget {BUDGET_MS:.0f} ms |"
        "\n|---|---|---|---|---|"
    )
    for path in sorted((REPO / "dags").glob("*.py")):
        cold = measure(path, args.runs)
        warm = measure(path, args.runs, PRELOAD)
        verdict = (
            "ok" if median(cold) <= BUDGET_MS else ("ok when warm" if median(warm) <= BUDGET_MS else "OVER")
        )
        print(
            f"| {path.name} | {median(cold):.0f} | {min(cold):.0f}–{max(cold):.0f} | {median(warm):.0f} | {verdict} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
