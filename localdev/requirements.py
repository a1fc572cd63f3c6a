"""Generate ``requirements/mwaa.txt``: what an Airflow 3.3 deployment (MWAA or any pip-based image) installs.

A deployment installs from a requirements file, not from ``uv.lock``. Deriving the file from the lock keeps the
deployment on the versions the tests ran, and ``tests/test_packaging.py`` fails when the lock moves without
``make requirements``.

What goes in: the runtime dependencies of ``pyproject.toml`` (no dependency group, not the project) and their
dependencies, pinned as locked, minus Airflow and everything Airflow's own install pulls in (as the lock resolves
the ``airflow`` group). Those are the deployment's: it installs them under Airflow's constraints file, and a
second pin of the same package here would either repeat the constraint or contradict it, and pip then refuses
the whole file.

Run ``make requirements`` (or ``python -m localdev.requirements [--output PATH]``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "requirements" / "mwaa.txt"
#: The dependency group that stands for the Airflow the deployment provides.
AIRFLOW_GROUP = "airflow"
CONSTRAINTS_URL = (
    "https://raw.githubusercontent.com/apache/airflow/constraints-{airflow}/constraints-{python}.txt"
)


@dataclass(frozen=True)
class Pin:
    """One exported requirement: its normalized name and its lines (``name==version [; marker]``, ``# via``)."""

    name: str
    lines: tuple[str, ...]

    @property
    def requirement(self) -> str:
        return self.lines[0]


def find_uv() -> str:
    """The uv the Makefile uses: ``$UV``, else uv on PATH, else the bootstrapped ``.tools/bin/uv``."""
    candidates = [os.environ.get("UV"), shutil.which("uv"), str(REPO / ".tools" / "bin" / "uv")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("uv not found: set UV=/path/to/uv, put uv on PATH, or run `make bootstrap`")


def export(*selection: str, uv: str | None = None) -> str:
    """``uv export`` of the lock as it is (``--frozen``: never re-resolves) for the given group selection."""
    command = [
        uv or find_uv(),
        "export",
        "--frozen",
        "--format",
        "requirements.txt",
        "--no-hashes",
        "--no-header",
        "--no-emit-project",
        *selection,
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def normalize(name: str) -> str:
    """PEP 503 name: ``Jinja2`` and ``jinja_2`` are both ``jinja2``/``jinja-2``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_export(text: str) -> list[Pin]:
    """Split ``uv export`` output into one :class:`Pin` per requirement line with its indented ``# via`` lines."""
    pins: list[Pin] = []
    current: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            if not current:
                raise ValueError(f"uv export: indented line before any requirement: {line!r}")
            current.append(line)
            continue
        if line.startswith("#"):
            continue
        if current:
            pins.append(_pin(current))
        current = [line]
    if current:
        pins.append(_pin(current))
    return pins


def _pin(lines: list[str]) -> Pin:
    match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*==", lines[0])
    if not match:
        raise ValueError(f"uv export: expected `name==version`, got {lines[0]!r}")
    return Pin(name=normalize(match.group(1)), lines=tuple(lines))


def version_of(pins: list[Pin], name: str) -> str:
    """The single locked version of ``name`` among ``pins`` (the Airflow version, for the constraints URL)."""
    versions = {pin.requirement.split("==", 1)[1].split(";")[0].strip() for pin in pins if pin.name == name}
    if len(versions) != 1:
        raise ValueError(f"expected one locked version of {name}, found {sorted(versions) or 'none'}")
    return versions.pop()


def python_minor() -> str:
    """The Python minor of ``requires-python`` (``>=3.11,<3.12`` -> ``3.11``): constraints files are per minor."""
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    match = re.fullmatch(r"\s*>=\s*3\.(\d+)(?:\.\d+)?\s*,\s*<\s*3\.(\d+)\s*", spec)
    if not match or int(match.group(2)) != int(match.group(1)) + 1:
        raise ValueError(
            f"pyproject.toml requires-python = {spec!r}: expected one minor, like '>=3.11,<3.12'"
        )
    return f"3.{match.group(1)}"


def direct_runtime_names() -> list[str]:
    """Normalized names of ``[project].dependencies`` (``"moto[server]==5.2.5"`` -> ``moto``)."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [normalize(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec).group(0)) for spec in declared]


def render(runtime: list[Pin], airflow: list[Pin], python: str, direct: list[str]) -> str:
    """The requirements file: header, Airflow's constraints line, then the runtime pins Airflow does not provide."""
    provided = {pin.name for pin in airflow}
    airflow_version = version_of(airflow, "apache-airflow")
    kept = [pin for pin in runtime if pin.name not in provided]
    direct_provided = ", ".join(sorted(name for name in direct if name in provided)) or "none"
    direct_note = textwrap.fill(
        f"Runtime dependencies of pyproject.toml left out for that reason: {direct_provided}.",
        width=110,
        initial_indent="# ",
        subsequent_indent="# ",
        break_on_hyphens=False,
    )
    header = f"""\
# Runtime dependencies of the Clickstream DAGs (dags/, include/, plugins/) for Airflow {airflow_version} on Python {python}
# (Amazon MWAA, or any pip-based Airflow {airflow_version} deployment).
#
# GENERATED from uv.lock by `make requirements` (python -m localdev.requirements): do not edit by hand.
# tests/test_packaging.py fails when this file and the lock disagree.
#
# Left out: apache-airflow=={airflow_version} and its dependency tree ({len(provided)} packages with Airflow itself, as locked). The
# deployment provides them, installed under Airflow's constraints file below; pinning one here would repeat
# the constraint or contradict it, and pip refuses a file that contradicts it.
{direct_note}
# Everything else is pinned exactly as locked, i.e. as tested. If the deployment rejects one of these pins
# because Airflow's constraints pin another version, move the lock to that version
# (`uv lock --upgrade-package NAME==VERSION`), run `make requirements` and the tests; do not edit this file.
#
# No groups: apache-flink, moto and jq (local runs only) and the test tools are not here.
"""
    constraint = "--constraint " + CONSTRAINTS_URL.format(airflow=airflow_version, python=python)
    body = "\n".join(line for pin in kept for line in pin.lines)
    return f"{header}\n{constraint}\n\n{body}\n"


def generate(uv: str | None = None) -> str:
    """The content of ``requirements/mwaa.txt`` for the current lock."""
    uv = uv or find_uv()
    runtime = parse_export(export("--no-default-groups", uv=uv))
    airflow = parse_export(export("--only-group", AIRFLOW_GROUP, uv=uv))
    return render(runtime, airflow, python_minor(), direct_runtime_names())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write (default: {OUTPUT})")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(generate())
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
