"""Every performance ratio of issue 11 in one run, each against its baseline measured in the same run.

``python -m bench.ratios [--small]`` runs the ratio benchmarks one after another on this machine, collects their
JSON results and prints one table: the measured ratio, the target and whether it holds, with machine info and
the load average before and after each benchmark (other work on the machine skews absolute times; a ratio
measured side by side much less). ``--small`` uses sizes that finish in a few minutes (for a quick check; the
targets are stated for the full sizes). Record the table in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.machine import print_machine


@dataclass(frozen=True)
class Ratio:
    name: str
    bench: str
    key: str  # key in the benchmark's JSON output
    target: float | None  # None: shown for reference, no target of the issue's
    higher_is_better: bool
    unit: str
    what: str


#: (benchmark module, arguments for --small, arguments for the full sizes)
BENCHES = {
    "flink_ratio_bench": (
        ["--events", "200000", "--variants", "bare,prod"],
        ["--variants", "bare,prod"],
    ),
    # five repeats at full size: the 151 MB output write varies by ±0.1 s with the kernel's dirty-page throttling
    "duckdb_bench": (["--events", "200000", "--sessions", "200000", "--repeats", "1"], ["--repeats", "5"]),
    "reconciliation_bench": (["--sessions", "200000", "--repeats", "1"], []),
    "compaction_bench": (["--events", "500000", "--repeats", "1"], ["--events", "2000000"]),
}

RATIOS = (
    Ratio(
        "Flink job vs bare SESSION TVF",
        "flink_ratio_bench",
        "ratio_to_bare_job_s.prod",
        0.6,
        True,
        "×",
        "production SQL with every rule and all four sinks, events/s over the bare query's",
    ),
    Ratio(
        "sessionize --engine duckdb vs pandas groupby",
        "duckdb_bench",
        "duckdb_vs_pandas",
        10.0,
        True,
        "×",
        "JSON lines → sessions, validation included",
    ),
    Ratio(
        "batch sessions of an hour vs bare DuckDB window",
        "duckdb_bench",
        "hour_vs_bare",
        None,
        True,
        "×",
        "from compacted Parquet, against DuckDB's bare window on the same file (which makes no session rows, "
        "pairing, dedup or rules); the issue's target for this path is the events/s below",
    ),
    Ratio(
        "batch sessions of an hour, events/s",
        "duckdb_bench",
        "hour_events_per_s",
        2_000_000,
        True,
        "events/s",
        "the issue's figure for DuckDB's own speed; the bare window's events/s are in the bench's table",
    ),
    Ratio(
        "reconciliation of an hour",
        "reconciliation_bench",
        "reconcile_hour_s",
        5.0,
        False,
        "s",
        "1 M sessions (full size); pandas baseline in the same run",
    ),
    Ratio(
        "compaction vs DuckDB read_json→Parquet",
        "compaction_bench",
        "ours_vs_duckdb",
        0.5,
        True,
        "×",
        "same objects, same run, one thread each",
    ),
)


def _shown(value: float, unit: str) -> str:
    """A measured value or target with its unit (rates in millions)."""
    return f"{value / 1e6:.2f} M {unit}" if unit == "events/s" else f"{value:g} {unit}"


def run_bench(name: str, args: list[str], out: Path) -> dict:
    """Run one benchmark in its own interpreter; its JSON results (empty when it failed or wrote none)."""
    load_before = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", *args, "--json", str(out)])
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["_exit_code"] = proc.returncode
    results["_load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return results


def lookup(results: dict, key: str):
    """A value by key (``a.b`` for a nested one), else searched in nested dicts (benches group results
    differently)."""
    if "." in key:
        value: object = results
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value
    if key in results:
        return results[key]
    for value in results.values():
        if isinstance(value, dict):
            found = lookup(value, key)
            if found is not None:
                return found
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ratios", description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="sizes that finish in minutes")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run only these benchmarks")
    args = parser.parse_args(argv)
    print_machine()
    collected: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ratios-") as tmp:
        for name, (small, full) in BENCHES.items():
            if args.only and name not in args.only:
                continue
            print(f"\n## bench.{name}\n", flush=True)
            collected[name] = run_bench(name, small if args.small else full, Path(tmp) / f"{name}.json")
    print("\n## Ratios (each against its baseline in the same run)\n")
    print("| ratio | measured | target | holds | load before→after | what |\n|---|---|---|---|---|---|")
    failed = 0
    for ratio in RATIOS:
        if ratio.bench not in collected:
            continue
        results = collected[ratio.bench]
        value = lookup(results, ratio.key)
        shown = _shown(value, ratio.unit) if isinstance(value, int | float) else "—"
        if shown == "—":
            holds = "not measured"
        elif ratio.target is None:
            holds = "(reference)"
        else:
            ok = value >= ratio.target if ratio.higher_is_better else value <= ratio.target
            holds = "yes" if ok else "**no**"
            failed += not ok
        sign = "≥" if ratio.higher_is_better else "≤"
        target = "—" if ratio.target is None else f"{sign} {_shown(ratio.target, ratio.unit)}"
        load = "→".join(str(x) for x in results["_load"])
        print(f"| {ratio.name} | {shown} | {target} | {holds} | {load} | {ratio.what} |")
    print(f"\n{failed} target(s) not met" if failed else "\nevery measured target holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
