"""Build the jar of the job's ``clickstream-event`` format from its Java sources (``include/flink_app/java``).

The format parses each event record once into the source's columns (see the Java docstrings for why the values
equal the JSON_VALUE extraction it replaced). No binary is committed: :func:`build` compiles the sources with
``javac --release 17`` against PyFlink's own Flink jars and writes a deterministic jar (sorted entries, fixed
timestamps), so the same sources and JDK give the same bytes. :mod:`include.flink_app.package` puts it in the
application zip under ``lib/``; it, the local runner and the benchmarks use :func:`cached`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

#: The Java sources and resources of the format.
JAVA_ROOT = Path(__file__).resolve().parent / "java"
#: The jar's file name, in the application zip (``lib/``) and in caches.
JAR_NAME = "clickstream-event-format.jar"
#: Java release the classes target (Managed Flink 2.x runs Java 17; javac 17 or newer builds them).
JAVA_RELEASE = "17"
#: Where :func:`cached` keeps built jars by default: the user's own cache (never a shared temporary folder).
DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clickstream" / "flink-format"
)
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_MANIFEST = b"Manifest-Version: 1.0\r\nCreated-By: include.flink_app.format_jar\r\n\r\n"


class FormatJarError(RuntimeError):
    """The jar cannot be built (no javac, no PyFlink jars, a compile error); the message says which."""


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
        raise FormatJarError("PyFlink (apache-flink) is not installed: its jars are the format's classpath")
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    if not any(lib.glob("flink-dist-*.jar")):
        raise FormatJarError(f"no flink-dist jar in {lib}")
    return lib


def _jar_bytes(classes: Path) -> bytes:
    entries = {p.relative_to(classes).as_posix(): p.read_bytes() for p in classes.rglob("*") if p.is_file()}
    resources = JAVA_ROOT / "resources"
    entries.update(
        {p.relative_to(resources).as_posix(): p.read_bytes() for p in resources.rglob("*") if p.is_file()}
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as jar:
        for name, data in [("META-INF/MANIFEST.MF", _MANIFEST), *sorted(entries.items())]:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            jar.writestr(info, data)
    return buffer.getvalue()


def build(out: Path) -> Path:
    """Compile the sources and write the jar to ``out`` (atomically); returns ``out``."""
    javac = shutil.which("javac")
    if javac is None:
        raise FormatJarError(
            f"javac not found on PATH: building {JAR_NAME} from {JAVA_ROOT} needs a JDK {JAVA_RELEASE}+"
        )
    sources = [p for p in source_files() if p.suffix == ".java"]
    with tempfile.TemporaryDirectory(prefix="format-jar-") as tmp:
        classes = Path(tmp) / "classes"
        command = [javac, "--release", JAVA_RELEASE, "-encoding", "UTF-8", "-nowarn"]
        command += ["-cp", str(flink_lib() / "*"), "-d", str(classes), *map(str, sources)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise FormatJarError(f"javac failed on {JAVA_ROOT}:\n{done.stderr[-4000:]}")
        data = _jar_bytes(classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.{source_digest()}.tmp")
    tmp_out.write_bytes(data)
    tmp_out.replace(out)
    return out


def cached(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The jar of the current sources under ``cache_dir/<digest>/``, built on first use (javac takes seconds;
    the digest of a few small files, milliseconds)."""
    out = cache_dir / source_digest() / JAR_NAME
    return out if out.is_file() else build(out)
