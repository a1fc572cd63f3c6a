"""``python -m localdev.report``: write the analytics report from the lake bucket of a running local endpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from localdev.report import DEFAULT_OUTPUT, LakeReadError, build_report
from localdev.report.lake import hour_of, hour_range


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.report", description=__doc__)
    parser.add_argument("--port", type=int, default=4566, help="the local AWS endpoint's port (default 4566)")
    parser.add_argument("--bucket", help="the lake bucket (default: the deployment's settings)")
    parser.add_argument("--from", dest="first", metavar="HOUR", help="first hour, e.g. 2026-11-27T10")
    parser.add_argument("--to", dest="last", metavar="HOUR", help="last hour (inclusive; default --from)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"folder (default {DEFAULT_OUTPUT})"
    )
    args = parser.parse_args(argv)

    from botocore.exceptions import EndpointConnectionError

    from include.config import settings
    from localdev.aws.clients import local_client

    config = settings()
    url = f"http://127.0.0.1:{args.port}"
    s3 = local_client("s3", url)
    hours = None
    try:
        if args.first or args.last:
            first = hour_of(args.first or args.last)
            hours = hour_range(first, hour_of(args.last) if args.last else first)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        files = build_report(s3, args.bucket or config.bucket, config, hours, args.output)
    except EndpointConnectionError:
        print(f"error: no S3 endpoint at {url}: start it with `make up` (or pass --port)", file=sys.stderr)
        return 2
    except LakeReadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(files.pngs)} charts: {files.html}")
    for path in files.pngs.values():
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
