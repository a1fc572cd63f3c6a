"""The ``clickstream`` command line (``localdev.cli:main``); subcommands are added with ``add_parser``.

``clickstream sessionize --engine flink|duckdb --input events.jsonl --output sessions.jsonl`` runs the same
session definition as the streaming job (Flink SQL via the local runner, bounded) or the batch safety net
(DuckDB SQL) over a local JSON-lines file; both print the same sessions for the same input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from include.sessions.contract import SESSION_FIELDS, SessionContract


class CliError(Exception):
    """A user-facing failure: printed without a traceback, exit code 1."""


def _sort_sessions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["user_id"], r["device_id"], r["session_start"]))


def _write_jsonl(path: Path, rows: list[dict[str, Any]], fields: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps({f: row[f] for f in fields}, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sessionize(
    engine: str,
    input_path: str | os.PathLike,
    contract: SessionContract,
    *,
    work_dir: str | os.PathLike | None = None,
    timeout_s: float = 1800,
) -> list[dict[str, Any]]:
    """Sessions of a checked events file with the chosen engine, sorted by user_id, device_id, session_start."""
    from localdev.event_files import check_time_order, read_events_file

    events = read_events_file(input_path, contract)
    if engine == "duckdb":
        from include.sessions import batch

        con = batch.connect()
        try:
            batch.register_raw_records(con, events.records)
            return _sort_sessions(batch.sessions(con, contract))
        finally:
            con.close()
    if engine == "flink":
        from localdev import flink_runner

        check_time_order(events, contract)
        run = flink_runner.run_bounded(events.path, contract, work_dir=work_dir, timeout_s=timeout_s)
        if run.late_events or run.rejected_events:  # the checks above should make this impossible
            raise CliError(
                f"the Flink job set aside {len(run.late_events)} late and {len(run.rejected_events)} rejected "
                f"events (first: {(run.late_events + run.rejected_events)[0]}); the sessions would be incomplete"
            )
        return _sort_sessions(run.sessions)
    raise CliError(f"--engine must be flink or duckdb, got {engine!r}")


def _cmd_sessionize(args: argparse.Namespace) -> int:
    changes = {}
    if args.gap_ms is not None:
        changes["gap_ms"] = args.gap_ms
    contract = SessionContract().replace(**changes)
    rows = sessionize(args.engine, args.input, contract, work_dir=args.work_dir, timeout_s=args.timeout)
    _write_jsonl(Path(args.output), rows, SESSION_FIELDS)
    print(f"{len(rows)} sessions written to {args.output} ({args.engine})", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clickstream", description="Clickstream sessions tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sessionize_parser = commands.add_parser(
        "sessionize",
        help="sessionize a JSON-lines events file offline (Flink SQL or DuckDB SQL, same definition)",
        description="Read a JSON-lines events file and write one JSON line per session, sorted by user_id, "
        "device_id, session_start. --engine flink needs the file ordered by client_timestamp (within the "
        "watermark delay); duckdb takes any order.",
    )
    sessionize_parser.add_argument("--engine", required=True, choices=("flink", "duckdb"))
    sessionize_parser.add_argument("--input", required=True, help="JSON-lines file of events")
    sessionize_parser.add_argument("--output", required=True, help="where to write the sessions (JSON lines)")
    sessionize_parser.add_argument(
        "--gap-ms", type=int, default=None, help="session gap in ms (default 60000)"
    )
    sessionize_parser.add_argument("--work-dir", default=None, help="flink: directory for the job's files")
    sessionize_parser.add_argument(
        "--timeout", type=float, default=1800, help="flink: seconds before giving up"
    )
    sessionize_parser.set_defaults(func=_cmd_sessionize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from include.sessions.contract import ContractError
    from localdev.event_files import InputError
    from localdev.flink_runner import FlinkJobError

    try:
        return args.func(args)
    except (CliError, InputError, ContractError, FlinkJobError) as exc:
        print(f"clickstream {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
