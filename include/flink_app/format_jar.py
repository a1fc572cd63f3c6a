"""Build the jar of the job's ``clickstream-event`` format from its Java sources (``include/flink_app/java``).

The format parses each event record once into the source's columns (see the Java docstrings for why the values
equal the JSON_VALUE extraction it replaced). No binary is committed: :func:`build` compiles the sources with
``javac --release 17`` against PyFlink's own Flink jars and writes a deterministic jar (sorted entries, fixed
timestamps), so the same sources and JDK give the same bytes. :mod:`include.flink_app.package` puts it in the
application zip under ``lib/``; it, the local runner and the benchmarks use :func:`cached`.

Airflow workers on AWS (MWAA) have neither a JDK nor PyFlink, so a deployment builds the jar beforehand,
``python -m include.flink_app.format_jar --out jars/`` (``make flink-jars``), ships it with the DAGs and names
it in ``CLICKSTREAM_FLINK_FORMAT_JAR`` (docs/deploy-aws.md, section 6). The jar's manifest records
:func:`source_digest` (:data:`DIGEST_ATTRIBUTE`), and :func:`resolve` refuses a prebuilt jar whose digest is not
that of the sources beside it: a jar left over from older sources would run a different format than the one
the shipped SQL was written for.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from include.flink_app.flink_job import FORMAT_JAR

#: The Java sources and resources of the format.
JAVA_ROOT = Path(__file__).resolve().parent / "java"
#: The jar's file name, in the application zip (``lib/``) and in caches.
JAR_NAME = FORMAT_JAR
#: Java release the classes target (Managed Flink 2.x runs Java 17; javac 17 or newer builds them).
JAVA_RELEASE = "17"
#: Where :func:`cached` keeps built jars by default: the user's own cache (never a shared temporary folder).
DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clickstream" / "flink-format"
)
#: The setting naming a prebuilt jar on the Airflow workers (``include.config.Settings.flink_format_jar``).
PREBUILT_SETTING = "CLICKSTREAM_FLINK_FORMAT_JAR"
#: The command that builds the jar for a deployment.
BUILD_COMMAND = "python -m include.flink_app.format_jar --out jars/"
#: The manifest attribute holding the :func:`source_digest` the jar was built from.
DIGEST_ATTRIBUTE = "Clickstream-Source-Digest"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


class FormatJarError(RuntimeError):
    """The jar cannot be built (a compile error) or a prebuilt one is unusable; the message says which."""


class ToolchainMissing(FormatJarError):
    """This machine cannot compile the jar (no javac or no PyFlink): a prebuilt jar has to be named instead."""


def source_files() -> list[Path]:
    """Every file the jar is built from (Java sources and resources), sorted."""
    return sorted(p for p in JAVA_ROOT.rglob("*") if p.is_file())


def source_digest() -> str:
    """A digest of the sources' paths and bytes: an unchanged digest means an unchanged jar."""
    digest = hashlib.sha256(JAVA_RELEASE.encode())
    for path in source_files():
        digest.update(path.relative_to(JAVA_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def flink_lib() -> Path:
    """PyFlink's ``lib`` folder (Flink's own jars, the compile classpath), found without importing PyFlink."""
    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise ToolchainMissing("PyFlink (apache-flink) is not installed: its jars are the format's classpath")
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    if not any(lib.glob("flink-dist-*.jar")):
        raise ToolchainMissing(f"no flink-dist jar in {lib}")
    return lib


def _manifest(digest: str) -> bytes:
    lines = [
        "Manifest-Version: 1.0",
        "Created-By: include.flink_app.format_jar",
        f"{DIGEST_ATTRIBUTE}: {digest}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def jar_digest(path: Path) -> str | None:
    """The :func:`source_digest` recorded in a jar's manifest, or None when it records none."""
    with zipfile.ZipFile(path) as jar:
        try:
            manifest = jar.read("META-INF/MANIFEST.MF").decode("utf-8", errors="replace")
        except KeyError:
            return None
    for line in manifest.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == DIGEST_ATTRIBUTE:
            return value.strip()
    return None


def _jar_bytes(classes: Path, digest: str) -> bytes:
    entries = {p.relative_to(classes).as_posix(): p.read_bytes() for p in classes.rglob("*") if p.is_file()}
    resources = JAVA_ROOT / "resources"
    entries.update(
        {p.relative_to(resources).as_posix(): p.read_bytes() for p in resources.rglob("*") if p.is_file()}
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as jar:
        for name, data in [("META-INF/MANIFEST.MF", _manifest(digest)), *sorted(entries.items())]:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            jar.writestr(info, data)
    return buffer.getvalue()


def build(out: Path) -> Path:
    """Compile the sources and write the jar to ``out`` (atomically); returns ``out``."""
    javac = shutil.which("javac")
    if javac is None:
        raise ToolchainMissing(
            f"javac not found on PATH: building {JAR_NAME} from {JAVA_ROOT} needs a JDK {JAVA_RELEASE}+"
        )
    sources = [p for p in source_files() if p.suffix == ".java"]
    digest = source_digest()
    with tempfile.TemporaryDirectory(prefix="format-jar-") as tmp:
        classes = Path(tmp) / "classes"
        command = [javac, "--release", JAVA_RELEASE, "-encoding", "UTF-8", "-nowarn"]
        command += ["-cp", str(flink_lib() / "*"), "-d", str(classes), *map(str, sources)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise FormatJarError(f"javac failed on {JAVA_ROOT}:\n{done.stderr[-4000:]}")
        data = _jar_bytes(classes, digest)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.{digest}.tmp")
    tmp_out.write_bytes(data)
    tmp_out.replace(out)
    return out


def cached(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The jar of the current sources under ``cache_dir/<digest>/``, built on first use (javac takes seconds;
    the digest of a few small files, milliseconds)."""
    digest = source_digest()
    out = cache_dir / digest / JAR_NAME
    try:
        current = out.is_file() and jar_digest(out) == digest
    except zipfile.BadZipFile:
        current = False
    return out if current else build(out)


def check_prebuilt(path: Path) -> Path:
    """Refuse a prebuilt jar that is missing, not a jar, or built from other sources than these; returns it."""
    if not path.is_file():
        raise FormatJarError(f"{PREBUILT_SETTING}: the format jar {path} does not exist")
    try:
        recorded = jar_digest(path)
    except zipfile.BadZipFile:
        raise FormatJarError(f"{PREBUILT_SETTING}: {path} is not a jar (zip) file") from None
    expected = source_digest()
    if recorded != expected:
        raise FormatJarError(
            f"{PREBUILT_SETTING}: the format jar {path} was built from other sources (its {DIGEST_ATTRIBUTE} "
            f"is {recorded or 'missing'}, the sources in {JAVA_ROOT} have {expected}); rebuild it with "
            f"`{BUILD_COMMAND}` from the same commit as include/ and ship it with the DAGs"
        )
    return path


def resolve(prebuilt: Path | None = None, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The jar the application zip carries: ``prebuilt`` when given (checked by :func:`check_prebuilt`),
    else :func:`cached`; without a JDK or PyFlink here, the error says what to set and how to build it."""
    if prebuilt is not None:
        return check_prebuilt(prebuilt)
    try:
        return cached(cache_dir)
    except ToolchainMissing as exc:
        raise ToolchainMissing(
            f"cannot build {JAR_NAME} here ({exc}). On a machine with a JDK {JAVA_RELEASE}+ and the project's "
            f"environment (PyFlink), build it with `{BUILD_COMMAND}` (or `make flink-jars`), ship it with the "
            f"DAGs and set {PREBUILT_SETTING} to its path on this machine "
            f"(e.g. /usr/local/airflow/dags/jars/{JAR_NAME} on MWAA)"
        ) from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Build {JAR_NAME} for a deployment ({PREBUILT_SETTING}).")
    parser.add_argument("--out", type=Path, required=True, help=f"a folder (the jar is <out>/{JAR_NAME})")
    args = parser.parse_args(argv)
    out = args.out / JAR_NAME
    try:
        build(out)
    except FormatJarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({DIGEST_ATTRIBUTE}: {source_digest()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
