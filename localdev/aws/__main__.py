"""``python -m localdev.aws up|down|status|restart-companion`` (what ``make up`` / ``make down`` run)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from localdev.aws.endpoint import DEFAULT_PORT, DEFAULT_STATE_DIR, EndpointError, LocalEndpoint


def _endpoint(args: argparse.Namespace, *, for_start: bool) -> LocalEndpoint:
    if for_start or args.port is not None:
        port = args.port if args.port is not None else int(os.environ.get("LOCAL_AWS_PORT", DEFAULT_PORT))
        return LocalEndpoint(port, args.state_dir, args.moto_port)
    return LocalEndpoint.from_state_dir(args.state_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.aws", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "restart-companion"))
    parser.add_argument("--port", type=int, default=None, help=f"public port (default {DEFAULT_PORT})")
    parser.add_argument("--moto-port", type=int, default=None, help="moto's internal port (default port + 1)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("LOCAL_AWS_STATE_DIR", DEFAULT_STATE_DIR)),
        help=f"pid files, logs and companion state (default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for start or stop")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            endpoint = _endpoint(args, for_start=True).start(timeout=args.timeout)
            print(
                f"local AWS endpoint up: moto pid {endpoint.moto_pid} on :{endpoint.moto_port}, "
                f"companion pid {endpoint.companion_pid}; logs in {endpoint.state_dir}",
                file=sys.stderr,
            )
            print(endpoint.url)
        elif args.command == "down":
            try:
                endpoint = _endpoint(args, for_start=False)
            except EndpointError as exc:
                print(f"nothing to stop: {exc}", file=sys.stderr)
                return 0
            killed = endpoint.stop(timeout=args.timeout)
            if killed:
                print(
                    f"killed Flink job processes a killed companion left running: {killed}", file=sys.stderr
                )
            print(f"local AWS endpoint {endpoint.url} stopped", file=sys.stderr)
        elif args.command == "status":
            endpoint = _endpoint(args, for_start=False)
            state = endpoint.status()
            print(json.dumps(state, indent=2))
            return 0 if state["moto"]["healthy"] and state["companion"]["healthy"] else 3
        else:
            endpoint = _endpoint(args, for_start=False)
            endpoint.restart_companion(timeout=args.timeout)
            print(f"companion restarted (pid {endpoint.companion_pid})", file=sys.stderr)
    except EndpointError as exc:
        print(f"local_aws {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
