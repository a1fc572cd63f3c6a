"""Build the Managed Service for Apache Flink application zip, and upload it to S3.

``python -m include.flink_app.package --out dist/flink-app.zip [--kinesis-connector-jar PATH]``

The zip holds ``main.py`` at its root, the planner-side code it imports (``include/sessions`` contract,
templates and job builder, ``include/events_schema.py``, ``include/sql/flink/*.sql``), ``vendor/`` with jinja2
and markupsafe (pure Python; Managed Flink installs no pip packages) and ``lib/`` with the Kinesis SQL connector
jar. The build is deterministic (sorted entries, fixed timestamps), so an unchanged application gives the same
bytes and the same S3 ETag.

The Kinesis connector jar is not on PyPI: it is downloaded at build time from Maven Central (not reachable
from the development machine, so local builds leave it out and the local runner uses the filesystem connector
instead). For Flink 2.x the artifact is ``org.apache.flink:flink-sql-connector-aws-kinesis-streams:6.0.0-2.0``
(the ``-2.0`` suffix is the Flink line it is built for; use the newest ``*-2.x`` release):

    mvn dependency:get -Dartifact=org.apache.flink:flink-sql-connector-aws-kinesis-streams:6.0.0-2.0 -Dtransitive=false
    # -> ~/.m2/repository/org/apache/flink/flink-sql-connector-aws-kinesis-streams/6.0.0-2.0/*.jar
    # or: curl -fLO https://repo1.maven.org/maven2/org/apache/flink/flink-sql-connector-aws-kinesis-streams/6.0.0-2.0/flink-sql-connector-aws-kinesis-streams-6.0.0-2.0.jar

Create the application with runtime ``FLINK-2_3`` and the property group from :func:`run_options`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

REPO_INCLUDE = Path(__file__).resolve().parent.parent
KINESIS_CONNECTOR = "org.apache.flink:flink-sql-connector-aws-kinesis-streams:6.0.0-2.0"
KINESIS_FACTORY_SERVICE = "META-INF/services/org.apache.flink.table.factories.Factory"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)

#: Files of include/ that the entry point imports at run time (no DuckDB, no runner, no AWS helpers).
APP_MODULES = (
    "__init__.py",
    "events_schema.py",
    "sessions/__init__.py",
    "sessions/contract.py",
    "sessions/templates.py",
    "flink_app/flink_job.py",
    "flink_app/__init__.py",
    "flink_app/main.py",
)


class PackageError(ValueError):
    """The connector jar or an input file is unusable; the message names it."""


def _package_files(package: Any) -> list[tuple[str, Path]]:
    root = Path(package.__file__).resolve().parent
    return [
        (f"vendor/{root.name}/{p.relative_to(root).as_posix()}", p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix not in (".so", ".pyd", ".pyc", ".c") and "__pycache__" not in p.parts
    ]


def check_connector_jar(path: Path) -> None:
    """Refuse a file that is not a jar registering a Flink table factory (a typo here fails only on AWS)."""
    if not path.is_file():
        raise PackageError(f"Kinesis connector jar {path} does not exist")
    try:
        with zipfile.ZipFile(path) as jar:
            services = jar.read(KINESIS_FACTORY_SERVICE).decode("utf-8", errors="replace")
    except zipfile.BadZipFile:
        raise PackageError(f"{path} is not a jar (zip) file") from None
    except KeyError:
        raise PackageError(
            f"{path} registers no Flink table factory ({KINESIS_FACTORY_SERVICE} missing)"
        ) from None
    if "kinesis" not in services.lower():
        raise PackageError(f"{path} registers no Kinesis table factory; expected {KINESIS_CONNECTOR}")


def application_files(kinesis_connector_jar: Path | None = None) -> list[tuple[str, Path]]:
    """(name in zip, source path) of every file of the application."""
    files = [("main.py", REPO_INCLUDE / "flink_app" / "main.py")]
    files += [(f"include/{name}", REPO_INCLUDE / name) for name in APP_MODULES]
    files += [
        (f"include/sql/flink/{p.name}", p) for p in sorted((REPO_INCLUDE / "sql" / "flink").glob("*.sql"))
    ]
    files += _package_files(jinja2) + _package_files(markupsafe)
    if kinesis_connector_jar is not None:
        check_connector_jar(kinesis_connector_jar)
        files.append((f"lib/{kinesis_connector_jar.name}", kinesis_connector_jar))
    for name, path in files:
        if not path.is_file():
            raise PackageError(f"application file {path} (zip entry {name}) is missing")
    return sorted(files)


def run_options(kinesis_connector_jar: Path | str | None) -> dict[str, str]:
    """The ``kinesis.analytics.flink.run.options`` property group for a zip built with this jar."""
    options = {"python": "main.py"}
    if kinesis_connector_jar is not None:
        options["jarfile"] = f"lib/{Path(kinesis_connector_jar).name}"
    return options


def build(out: Path, kinesis_connector_jar: Path | None = None) -> dict[str, Any]:
    """Write the zip; returns its manifest (entries, sha256, whether the connector is included)."""
    files = application_files(kinesis_connector_jar)
    manifest = {
        "entries": [name for name, _ in files],
        "kinesis_connector": kinesis_connector_jar.name if kinesis_connector_jar else None,
        "run_options": run_options(kinesis_connector_jar),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
        info = zipfile.ZipInfo("BUILD-MANIFEST.json", date_time=_FIXED_TIME)
        info.external_attr = 0o644 << 16
        archive.writestr(info, json.dumps(manifest, indent=2, sort_keys=True))
    data = buffer.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    manifest["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["bytes"] = len(data)
    return manifest


def upload(client: Any, bucket: str, key: str, path: str | Path) -> dict[str, Any]:
    """Put the zip at s3://bucket/key with a boto3 S3 client; returns bucket, key, ETag and VersionId."""
    path = Path(path)
    if not path.is_file():
        raise PackageError(f"application zip {path} does not exist; build it first")
    with open(path, "rb") as body:
        response = client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/zip")
    return {
        "bucket": bucket,
        "key": key,
        "etag": response.get("ETag", "").strip('"'),
        "version_id": response.get("VersionId"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Managed Flink application zip.")
    parser.add_argument("--out", type=Path, default=Path("dist/flink-app.zip"))
    parser.add_argument(
        "--kinesis-connector-jar",
        type=Path,
        default=None,
        help=f"the {KINESIS_CONNECTOR} jar (from Maven Central); without it the zip runs only locally",
    )
    args = parser.parse_args(argv)
    try:
        manifest = build(args.out, args.kinesis_connector_jar)
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({manifest['bytes']} bytes, sha256 {manifest['sha256'][:12]})")
    if manifest["kinesis_connector"] is None:
        print(
            f"note: no Kinesis connector jar included; on AWS the job needs {KINESIS_CONNECTOR} "
            "(see this module's docstring for how to download it)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
