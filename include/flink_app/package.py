"""Build the Managed Service for Apache Flink application zip, and upload it to S3.

``python -m include.flink_app.package --out dist/flink-app.zip [--kinesis-connector-jar PATH] [--format-jar PATH]``

The zip's content is derived, never listed by hand:

* ``main.py`` at its root (the entry point, :data:`ENTRY_MODULE`) and the ``include`` modules it imports,
  found by reading the import statements of the sources (:mod:`include.flink_app.import_graph`, transitively,
  with the parent packages). The build refuses a closure reaching beyond :data:`ALLOWED_MODULES` (the app and
  the shared session contract): no config, AWS or DuckDB code travels to Flink;
* the SQL templates the job renders (:data:`include.flink_app.flink_job.TEMPLATES` and the macros they
  import, :func:`include.sessions.templates.template_files`);
* ``vendor/`` with the third-party packages those modules import, minus the standard library and what the
  Flink runtime provides (:data:`RUNTIME_PROVIDED`), plus their own requirements: jinja2 and markupsafe (pure
  Python; Managed Flink installs no pip packages);
* ``lib/`` with the source format's jar (``main.py`` puts it on ``pipeline.jars``): the prebuilt one named by
  ``--format-jar`` / ``CLICKSTREAM_FLINK_FORMAT_JAR`` when set (Airflow workers on AWS have no JDK; its recorded
  source digest must match ``include/flink_app/java``), else compiled here (:mod:`include.flink_app.format_jar`);
  and the Kinesis SQL connector jar, when given (Managed Flink's ``jarfile``).

The build is deterministic (sorted entries, fixed timestamps), so an unchanged application gives the same
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
import importlib.metadata
import importlib.util
import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

from include.flink_app import flink_job, format_jar, import_graph
from include.sessions import templates

#: The directory holding the ``include`` package (the repository root, or the Airflow dags folder).
SOURCE_ROOT = Path(__file__).resolve().parents[2]
#: The module Managed Flink runs, copied to the zip's root as ``main.py``.
ENTRY_MODULE = "include.flink_app.main"
#: What the application may import from ``include``: itself and the shared session contract.
ALLOWED_MODULES = (
    "include",
    "include.events_schema",
    "include.flink_app",
    "include.sessions",
    "include.sessions.contract",
    "include.sessions.templates",
)
#: The application's own package; its build tooling (this module, the import graph) is never imported by it.
APP_PACKAGE = "include.flink_app"
#: Imports the Flink runtime provides (PyFlink), so they are not vendored.
RUNTIME_PROVIDED = frozenset({"pyflink"})
KINESIS_CONNECTOR = "org.apache.flink:flink-sql-connector-aws-kinesis-streams:6.0.0-2.0"
KINESIS_FACTORY_SERVICE = "META-INF/services/org.apache.flink.table.factories.Factory"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
#: Compiled or native files left out of vendored packages (markupsafe falls back to pure Python).
_NOT_VENDORED = (".so", ".pyd", ".pyc", ".c")


class PackageError(ValueError):
    """The connector jar, an input file or the application's imports are unusable; the message names it."""


def _allowed(module: str) -> bool:
    return module in ALLOWED_MODULES or module.startswith(f"{APP_PACKAGE}.")


def application_modules(source_root: Path = SOURCE_ROOT) -> tuple[dict[str, Path], set[str]]:
    """The ``include`` modules importing the entry point loads (name -> file), and the top-level names of
    everything else they import; refuses a module outside :data:`ALLOWED_MODULES`, naming the import chain."""
    index = import_graph.module_index(source_root, ["include"])
    graph = import_graph.import_graph(index)
    via = import_graph.closure(graph, index, ENTRY_MODULE)
    outside = sorted(m for m in via if not _allowed(m))
    if outside:
        chains = "; ".join(" -> ".join(import_graph.chain(via, m)) for m in outside)
        raise PackageError(
            f"the Flink application may import only {list(ALLOWED_MODULES)} and {APP_PACKAGE}.*, but "
            f"its imports reach {outside}: {chains}"
        )
    external = import_graph.external_imports(index, via)
    return {m: index[m] for m in sorted(via)}, set(external)


def _requirements(distribution: str) -> list[str]:
    """Names of the distributions ``distribution`` needs without extras (markers evaluated here)."""
    from packaging.requirements import Requirement

    names = []
    for spec in importlib.metadata.distribution(distribution).requires or []:
        requirement = Requirement(spec)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.append(requirement.name)
    return names


def vendored_packages(imported: set[str]) -> list[str]:
    """Top-level packages to vendor for these imports: the third-party ones not provided by the Flink
    runtime, and the top-level packages of the distributions they require, transitively."""
    third_party = sorted(
        n for n in imported if n not in sys.stdlib_module_names and n not in RUNTIME_PROVIDED
    )
    if not third_party:
        return []
    providers = importlib.metadata.packages_distributions()
    by_distribution: dict[str, list[str]] = {}
    for top, dists in providers.items():
        for dist in dists:
            by_distribution.setdefault(dist.lower().replace("_", "-"), []).append(top)
    packages: set[str] = set()
    todo = []
    for name in third_party:
        if name not in providers:
            raise PackageError(
                f"the Flink application imports {name!r}, which no installed distribution provides"
            )
        todo += providers[name]
    seen: set[str] = set()
    while todo:
        dist = todo.pop().lower().replace("_", "-")
        if dist in seen:
            continue
        seen.add(dist)
        packages.update(t for t in by_distribution.get(dist, []) if not t.startswith("_"))
        todo += _requirements(dist)
    return sorted(packages)


def _vendor_files(name: str) -> list[tuple[str, Path]]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise PackageError(f"vendored package {name!r} is not importable here")
    if not spec.submodule_search_locations:
        return [(f"vendor/{Path(spec.origin).name}", Path(spec.origin))]
    root = Path(spec.origin).parent
    return [
        (f"vendor/{name}/{p.relative_to(root).as_posix()}", p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix not in _NOT_VENDORED and "__pycache__" not in p.parts
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


def application_files(
    kinesis_connector_jar: Path | None = None, source_format_jar: Path | None = None
) -> list[tuple[str, Path]]:
    """(name in zip, source path) of every file of the application, derived as the module docstring says;
    ``source_format_jar`` is the built format jar (:func:`build` takes it from :func:`format_jar.cached`)."""
    modules, imported = application_modules()
    files = [("main.py", modules[ENTRY_MODULE])]
    files += [(path.relative_to(SOURCE_ROOT).as_posix(), path) for path in modules.values()]
    files += [
        (path.relative_to(SOURCE_ROOT).as_posix(), path)
        for path in templates.template_files(flink_job.TEMPLATES)
    ]
    for package in vendored_packages(imported):
        files += _vendor_files(package)
    if kinesis_connector_jar is not None:
        check_connector_jar(kinesis_connector_jar)
        files.append((f"lib/{kinesis_connector_jar.name}", kinesis_connector_jar))
    if source_format_jar is not None:
        files.append((f"lib/{flink_job.FORMAT_JAR}", source_format_jar))
    for name, path in files:
        if not path.is_file():
            raise PackageError(f"application file {path} (zip entry {name}) is missing")
    names = [name for name, _ in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PackageError(f"two files for the same zip entries {duplicates}")
    return sorted(files)


def run_options(kinesis_connector_jar: Path | str | None) -> dict[str, str]:
    """The ``kinesis.analytics.flink.run.options`` property group for a zip built with this jar."""
    options = {"python": "main.py"}
    if kinesis_connector_jar is not None:
        options["jarfile"] = f"lib/{Path(kinesis_connector_jar).name}"
    return options


def build(
    out: Path, kinesis_connector_jar: Path | None = None, prebuilt_format_jar: Path | None = None
) -> dict[str, Any]:
    """Write the zip; returns its manifest (entries, sha256, whether the connector is included).
    ``prebuilt_format_jar`` replaces compiling the format here (:func:`format_jar.resolve`)."""
    files = application_files(kinesis_connector_jar, format_jar.resolve(prebuilt_format_jar))
    return _write_zip(out, files, kinesis_connector_jar)


def _write_zip(
    out: Path, files: list[tuple[str, Path]], kinesis_connector_jar: Path | None
) -> dict[str, Any]:
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
    parser.add_argument(
        "--format-jar",
        type=Path,
        default=None,
        help=f"a prebuilt {format_jar.JAR_NAME} (default: {format_jar.PREBUILT_SETTING}; unset: compile it here)",
    )
    args = parser.parse_args(argv)
    if args.format_jar is None:
        from include.config import settings

        configured = settings().flink_format_jar
        args.format_jar = Path(configured) if configured else None
    try:
        manifest = build(args.out, args.kinesis_connector_jar, args.format_jar)
    except (PackageError, format_jar.FormatJarError) as exc:
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
