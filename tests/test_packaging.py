"""What ships and what it needs: requirements/mwaa.txt matches the lock, a clean Airflow venv installed from it
parses every DAG, imports every shipped module and builds the Flink application zip (from a prebuilt format jar)
without the local-only tools, and no wheel carries a top-level ``include`` or ``localdev`` package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from include.flink_app import format_jar
from include.flink_app import package as flink_package
from localdev import requirements

pytestmark = pytest.mark.slow

REPO = requirements.REPO
CHECKED_IN = requirements.OUTPUT


def _uv_env() -> dict[str, str]:
    """The caller's environment minus the virtualenv it runs in, with the Makefile's CA bundle choice."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    if Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        env.setdefault("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    return env


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, (
        f"{' '.join(map(str, command))} failed ({done.returncode}):\n{done.stderr[-4000:]}"
    )
    return done


def _locked_versions() -> dict[str, set[str]]:
    """Every package of uv.lock with its locked version(s) (a marker split can lock two)."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions: dict[str, set[str]] = {}
    for package in lock["package"]:
        if "version" in package:
            versions.setdefault(requirements.normalize(package["name"]), set()).add(package["version"])
    return versions


def test_requirements_file_matches_the_lock(tmp_path):
    out = tmp_path / "mwaa.txt"
    assert requirements.main(["--output", str(out)]) == 0
    assert CHECKED_IN.is_file(), f"{CHECKED_IN} is missing: run `make requirements`"
    assert out.read_text() == CHECKED_IN.read_text(), (
        f"{CHECKED_IN.relative_to(REPO)} does not match uv.lock: run `make requirements` and commit it"
    )


def _split_constraint(text: str) -> tuple[list[str], str]:
    """The file's ``--constraint`` lines, and the rest (plain requirements)."""
    lines = text.splitlines()
    constraints = [line for line in lines if line.startswith("--constraint ")]
    return constraints, "\n".join(line for line in lines if not line.startswith("--constraint ")) + "\n"


def test_requirements_file_holds_the_runtime_closure_minus_airflow():
    """Each pin is locked; every runtime dependency is pinned or provided by Airflow; no group-only package."""
    uv = requirements.find_uv()
    constraints, body = _split_constraint(CHECKED_IN.read_text())
    pins = requirements.parse_export(body)
    runtime = {
        pin.name for pin in requirements.parse_export(requirements.export("--no-default-groups", uv=uv))
    }
    airflow_pins = requirements.parse_export(requirements.export("--only-group", "airflow", uv=uv))
    airflow = {pin.name for pin in airflow_pins}
    locked = _locked_versions()
    pinned = {pin.name for pin in pins}

    for pin in pins:
        version = pin.requirement.split("==", 1)[1].split(";")[0].strip()
        assert version in locked.get(pin.name, set()), f"{pin.requirement}: not the locked version"
    assert pinned == runtime - airflow
    for name in requirements.direct_runtime_names():
        assert name in pinned or name in airflow, f"runtime dependency {name} neither pinned nor provided"
    assert "apache-airflow" in airflow and "apache-airflow" not in pinned
    airflow_version = requirements.version_of(airflow_pins, "apache-airflow")
    python = requirements.python_minor()
    assert constraints == [
        f"--constraint https://raw.githubusercontent.com/apache/airflow/constraints-{airflow_version}/constraints-{python}.txt"
    ]


def test_a_built_wheel_carries_no_top_level_package(tmp_path):
    """The product ships as files; a standard wheel of the project holds its metadata only."""
    _run(
        [requirements.find_uv(), "build", "--wheel", "--out-dir", str(tmp_path)],
        cwd=REPO,
        env=_uv_env(),
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    outside_metadata = [name for name in names if not name.split("/", 1)[0].endswith(".dist-info")]
    assert names and outside_metadata == [], f"{wheel.name} installs {outside_metadata}"


def test_clickstream_command_runs_from_the_editable_install():
    done = _run([str(Path(sys.executable).parent / "clickstream"), "--help"])
    assert "sessionize" in done.stdout


def _shipped_modules() -> list[str]:
    """Every module a deployment imports by name: ``include.…`` from the repo root, plugins from plugins/."""
    modules = []
    for root, files in (
        (REPO, (REPO / "include").rglob("*.py")),
        (REPO / "plugins", (REPO / "plugins").rglob("*.py")),
    ):
        for path in sorted(files):
            parts = path.relative_to(root).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            if parts[-1] != "__main__" and "__pycache__" not in parts:
                modules.append(".".join(parts))
    return modules


#: Runs inside the clean venv: parse dags/ as Airflow's DAG processor does, then import every shipped module.
_PROBE = textwrap.dedent(
    """
    import importlib, importlib.util, json, pathlib, sys
    from airflow.dag_processing.dagbag import DagBag

    dags, modules = pathlib.Path(sys.argv[1]), json.loads(sys.argv[2])
    bag = DagBag(dag_folder=str(dags))
    failed = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            failed[module] = f"{type(exc).__name__}: {exc}"
    print(json.dumps({
        "dag_files": sorted({pathlib.Path(dag.fileloc).name for dag in bag.dags.values()}),
        "import_errors": {pathlib.Path(path).name: error for path, error in bag.import_errors.items()},
        "failed": failed,
        "importable": {name: importlib.util.find_spec(name) is not None for name in ("pyflink", "moto", "jq")},
    }))
    """
)


@pytest.mark.timeout(900)
def test_runtime_requirements_install_clean_and_every_dag_imports(tmp_path):
    """MWAA in miniature: Airflow as locked, then requirements/mwaa.txt; no dependency group at all."""
    uv = requirements.find_uv()
    env = _uv_env()
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run([uv, "venv", "--python", "3.11", "--no-project", str(venv)], cwd=tmp_path, env=env)

    # The deployment's Airflow: the lock's airflow group stands in for Airflow's constraints file, which the
    # test cannot fetch; the requirements file's own --constraint line is what a deployment adds on top.
    airflow_pins = tmp_path / "airflow.txt"
    airflow_pins.write_text(requirements.export("--only-group", "airflow", uv=uv))
    body = tmp_path / "mwaa-body.txt"
    constraints, requirement_lines = _split_constraint(CHECKED_IN.read_text())
    assert len(constraints) == 1
    body.write_text(requirement_lines)
    _run([uv, "pip", "install", "--python", str(python), "-r", str(airflow_pins), "-r", str(body)], env=env)

    frozen = _run([uv, "pip", "freeze", "--python", str(python)], env=env).stdout
    installed = dict(line.split("==", 1) for line in frozen.splitlines() if "==" in line)
    locked = _locked_versions()
    not_locked = {
        name: version
        for name, version in installed.items()
        if version not in locked.get(requirements.normalize(name), set())
    }
    assert not_locked == {}, f"installed outside the lock: {not_locked}"
    groups = requirements.export("--only-group", "local", "--only-group", "dev", uv=uv)
    group_only = {pin.name for pin in requirements.parse_export(groups)}
    group_only -= {
        pin.name for pin in requirements.parse_export(requirements.export("--no-default-groups", uv=uv))
    }
    assert {"apache-flink", "moto", "jq", "pytest"} <= group_only
    assert group_only & {requirements.normalize(name) for name in installed} == set()

    probe_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Where a deployment puts dags/, include/ and plugins/ on sys.path (MWAA: the dags folder root).
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
    }
    modules = _shipped_modules()
    assert "include.flink_app.main" in modules
    probe = _run(
        [str(python), "-c", _PROBE, str(REPO / "dags"), json.dumps(modules)], env=probe_env, cwd=tmp_path
    )
    result = json.loads(probe.stdout.strip().splitlines()[-1])

    assert result["import_errors"] == {}
    assert result["dag_files"] == sorted(
        p.name for p in (REPO / "dags").glob("*.py") if p.name != "__init__.py"
    )
    assert result["failed"] == {}
    assert result["importable"] == {"pyflink": False, "moto": False, "jq": False}

    _flink_zip_builds_from_a_prebuilt_format_jar(python, probe_env, tmp_path)


def _flink_zip_builds_from_a_prebuilt_format_jar(
    python: Path, probe_env: dict[str, str], tmp_path: Path
) -> None:
    """setup's publish_flink_code on an MWAA worker: no PyFlink, no javac; the jar built for the deployment
    (``python -m include.flink_app.format_jar --out jars/``, here) is named by CLICKSTREAM_FLINK_FORMAT_JAR."""
    jars = tmp_path / "jars"
    assert format_jar.main(["--out", str(jars)]) == 0
    prebuilt = jars / format_jar.JAR_NAME
    no_jdk = {**probe_env, "PATH": str(python.parent)}  # the venv's bin/ only: no javac, no java
    assert not (python.parent / "javac").exists()
    command = [str(python), "-m", "include.flink_app.package", "--out"]

    without = subprocess.run(
        [*command, str(tmp_path / "none.zip")], env=no_jdk, cwd=REPO, capture_output=True, text=True
    )
    assert without.returncode == 1, without.stderr
    assert "set CLICKSTREAM_FLINK_FORMAT_JAR to its path" in without.stderr
    assert not (tmp_path / "none.zip").exists()

    on_worker = tmp_path / "worker.zip"
    _run([*command, str(on_worker)], env={**no_jdk, "CLICKSTREAM_FLINK_FORMAT_JAR": str(prebuilt)}, cwd=REPO)
    with zipfile.ZipFile(on_worker) as archive:
        assert archive.read(f"lib/{format_jar.JAR_NAME}") == prebuilt.read_bytes()
    # The worker's zip is the one the development environment builds: same sources, same vendored versions.
    flink_package.build(tmp_path / "here.zip", None, prebuilt)
    assert on_worker.read_bytes() == (tmp_path / "here.zip").read_bytes()
