"""``make bench``: run every benchmark in turn (each prints a markdown table with machine info).

Record the results in docs/performance.md. A single benchmark: ``python -m bench.<name> --help``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHMARKS = ("dag_import_bench", "ingest_bench", "compaction_bench", "flink_bench", "freshness_bench")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m bench", description=__doc__).parse_args(argv)
    failed = []
    for name in BENCHMARKS:
        print(f"\n## bench.{name}\n", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
