"""The Managed Flink application zip: derived content, self-contained import, determinism, S3 upload."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from include.flink_app import flink_job, format_jar, package
from include.flink_app import main as app_main

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("zip_driver.py")

#: What Managed Flink would hand the job on AWS, plus a contract and a Flink override.
AWS_GROUPS = {
    "kinesis.analytics.flink.run.options": {"python": "main.py", "jarfile": "lib/connector.jar"},
    "consumer.config.0": {
        "stream.arn": "arn:aws:kinesis:eu-west-1:123456789012:stream/clickstream-events",
        "aws.region": "eu-west-1",
    },
    "sink.config.0": {"output.path": "s3://clickstream-lake/flink"},
    "contract.config.0": {"gap.ms": "90500"},
    "flink.config.0": {"table.exec.source.idle-timeout": "30 s"},
}


def _fake_connector(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as jar:
        jar.writestr(
            package.KINESIS_FACTORY_SERVICE,
            "org.apache.flink.connector.kinesis.table.KinesisDynamicTableFactory\n",
        )
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The zip built once for the module, extracted, with a property file beside it."""
    root = tmp_path_factory.mktemp("flink-app")
    manifest = package.build(root / "app.zip")
    with zipfile.ZipFile(root / "app.zip") as archive:
        archive.extractall(root / "app")
        names = archive.namelist()
    properties = root / "application_properties.json"
    properties.write_text(json.dumps(flink_job.to_application_properties(AWS_GROUPS)))
    return {"root": root, "app": root / "app", "names": names, "manifest": manifest, "properties": properties}


def _run_driver(built, *python_flags: str) -> dict:
    """Import the application from the extracted zip in a fresh interpreter (see zip_driver.py)."""
    result = subprocess.run(
        [sys.executable, *python_flags, str(DRIVER), str(built["app"]), str(built["properties"]), str(REPO)],
        cwd=built["root"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "python_flags",
    [
        pytest.param(("-I", "-S"), id="stdlib-only"),
        pytest.param(("-I",), id="with-site-packages"),
    ],
)
def test_entry_point_imports_and_builds_the_job_from_the_zip_alone(built, python_flags):
    """With the repository off sys.path, the zip alone provides include/, jinja2 and markupsafe, and the job
    it builds is the one the repository builds. Without site-packages (-S) nothing else could provide them; with
    site-packages, vendor/ still wins over the installed jinja2."""
    out = _run_driver(built, *python_flags)
    app = built["app"].resolve()
    assert str(REPO) not in out["sys_path"]
    assert Path(out["main"]).resolve() == app / "main.py"
    assert Path(out["include"]).resolve() == app / "include" / "__init__.py"
    for name, file in out["modules"].items():
        assert Path(file).resolve().is_relative_to(app / "include"), (name, file)
    assert Path(out["jinja2"]).resolve().is_relative_to(app / "vendor" / "jinja2")
    assert Path(out["markupsafe"]).resolve().is_relative_to(app / "vendor" / "markupsafe")
    assert out["unwanted"] == []
    assert out["is_local"] is True

    expected = flink_job.job_from_properties(AWS_GROUPS)
    assert (out["ddl"], out["inserts"], out["config"]) == (expected.ddl, expected.inserts, expected.config)


def test_zip_holds_exactly_what_the_application_loads(built):
    """The derived content matches what a run actually imports and renders: nothing missing, nothing extra."""
    out = _run_driver(built, "-I", "-S")
    app = built["app"].resolve()
    names = built["names"]
    loaded_sources = {Path(f).resolve().relative_to(app).as_posix() for f in out["modules"].values()}
    assert {n for n in names if n.startswith("include/") and n.endswith(".py")} == loaded_sources
    assert {n for n in names if n.startswith("include/sql/")} == {
        f"include/sql/{t}" for t in out["templates"]
    }
    assert {n for n in names if not n.startswith(("include/", "vendor/"))} == {
        "main.py",
        "BUILD-MANIFEST.json",
        f"lib/{flink_job.FORMAT_JAR}",
    }
    # main.py finds the source format's jar where the zip carries it (the local runner passes its own).
    assert out["format_jar"] == str(app / "lib" / flink_job.FORMAT_JAR)
    assert (app / "main.py").read_bytes() == (REPO / "include/flink_app/main.py").read_bytes()
    vendored = {n.split("/")[1] for n in names if n.startswith("vendor/")}
    assert vendored == {"jinja2", "markupsafe"}
    assert not any(n.endswith((".so", ".pyd", ".pyc")) for n in names)
    assert built["manifest"]["entries"] == sorted(n for n in names if n != "BUILD-MANIFEST.json")


def test_application_imports_only_the_session_contract():
    modules, imported = package.application_modules()
    assert all(package._allowed(m) for m in modules), sorted(modules)
    assert package.ENTRY_MODULE in modules and "include.sessions.contract" in modules
    forbidden = {"include.config", "include.sessions.batch", "include.flink_app.package"}
    assert not forbidden & set(modules)
    third_party = {n for n in imported if n not in sys.stdlib_module_names}
    assert third_party <= {"jinja2", "pyflink"}, third_party


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_build_refuses_an_application_importing_beyond_the_contract(tmp_path):
    """A function-level import of config in the job builder is found and named with its import chain."""
    root = _write(
        tmp_path,
        {
            "include/__init__.py": "",
            "include/config.py": "import boto3\n",
            "include/flink_app/__init__.py": "",
            "include/flink_app/main.py": "from include.flink_app import flink_job\n",
            "include/flink_app/flink_job.py": "def settings():\n    from include import config\n",
        },
    )
    with pytest.raises(package.PackageError) as error:
        package.application_modules(root)
    message = str(error.value)
    assert "reach ['include.config']" in message
    assert "include.flink_app.main -> include.flink_app.flink_job -> include.config" in message


def test_vendored_packages_follow_the_installed_requirements():
    assert package.vendored_packages({"jinja2", "json", "pyflink"}) == ["jinja2", "markupsafe"]
    assert package.vendored_packages({"json", "pyflink"}) == []
    with pytest.raises(package.PackageError, match="'no_such_dist_xyz', which no installed distribution"):
        package.vendored_packages({"no_such_dist_xyz"})


def test_build_is_deterministic_and_carries_the_connector(tmp_path):
    jar = _fake_connector(tmp_path / "flink-sql-connector-aws-kinesis-streams-6.0.0-2.0.jar")
    first = package.build(tmp_path / "a.zip", jar)
    second = package.build(tmp_path / "b.zip", jar)
    assert first["sha256"] == second["sha256"]
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert f"lib/{jar.name}" in zipfile.ZipFile(tmp_path / "a.zip").namelist()
    assert first["run_options"] == {"python": "main.py", "jarfile": f"lib/{jar.name}"}
    assert first["kinesis_connector"] == jar.name


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.write_text("nope"), p)[1], "is not a jar"),
        (lambda p: (zipfile.ZipFile(p, "w").close(), p)[1], "registers no Flink table factory"),
    ],
)
def test_build_refuses_a_bad_connector_jar(tmp_path, make, message):
    jar = make(tmp_path / "connector.jar")
    with pytest.raises(package.PackageError, match=message):
        package.build(tmp_path / "app.zip", jar)
    assert not (tmp_path / "app.zip").exists()


def _with_manifest(source: Path, out: Path, manifest: str | None) -> Path:
    """A copy of the jar ``source`` whose manifest is ``manifest`` (None: no manifest at all)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(out, "w") as copy:
        for name in original.namelist():
            if name != "META-INF/MANIFEST.MF":
                copy.writestr(name, original.read(name))
        if manifest is not None:
            copy.writestr("META-INF/MANIFEST.MF", manifest)
    return out


def test_a_prebuilt_format_jar_gives_the_zip_a_local_build_gives(tmp_path):
    """What setup does on AWS (CLICKSTREAM_FLINK_FORMAT_JAR) and what it does locally yield the same bytes."""
    prebuilt = tmp_path / "jars" / format_jar.JAR_NAME
    prebuilt.parent.mkdir()
    prebuilt.write_bytes(format_jar.cached().read_bytes())
    assert format_jar.jar_digest(prebuilt) == format_jar.source_digest()
    from_prebuilt = package.build(tmp_path / "prebuilt.zip", None, prebuilt)
    compiled_here = package.build(tmp_path / "local.zip")
    assert from_prebuilt["sha256"] == compiled_here["sha256"]
    with zipfile.ZipFile(tmp_path / "prebuilt.zip") as archive:
        assert archive.read(f"lib/{flink_job.FORMAT_JAR}") == prebuilt.read_bytes()


@pytest.mark.parametrize(
    ("manifest", "recorded"),
    [
        ("Manifest-Version: 1.0\r\nClickstream-Source-Digest: 0123456789abcdef\r\n\r\n", "0123456789abcdef"),
        ("Manifest-Version: 1.0\r\n\r\n", "missing"),
        (None, "missing"),
    ],
)
def test_a_format_jar_from_other_sources_is_refused(tmp_path, manifest, recorded):
    stale = _with_manifest(format_jar.cached(), tmp_path / format_jar.JAR_NAME, manifest)
    expected = format_jar.source_digest()
    with pytest.raises(format_jar.FormatJarError) as refused:
        package.build(tmp_path / "app.zip", None, stale)
    message = str(refused.value)
    assert f"the format jar {stale} was built from other sources" in message
    assert f"Clickstream-Source-Digest is {recorded}" in message
    assert f"the sources in {format_jar.JAVA_ROOT} have {expected}" in message
    assert "python -m include.flink_app.format_jar --out jars/" in message
    assert message.startswith("CLICKSTREAM_FLINK_FORMAT_JAR:")
    assert not (tmp_path / "app.zip").exists()


def test_a_missing_or_broken_format_jar_is_refused(tmp_path):
    with pytest.raises(format_jar.FormatJarError, match=f"format jar {tmp_path}/nope.jar does not exist"):
        package.build(tmp_path / "app.zip", None, tmp_path / "nope.jar")
    (tmp_path / "text.jar").write_text("not a jar")
    with pytest.raises(format_jar.FormatJarError, match=f"{tmp_path}/text.jar is not a jar"):
        package.build(tmp_path / "app.zip", None, tmp_path / "text.jar")


def test_without_javac_and_without_the_setting_the_error_says_what_to_set(tmp_path, monkeypatch):
    """An Airflow worker without a JDK and an empty cache: the message names the setting and the command."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(format_jar.ToolchainMissing) as refused:
        format_jar.resolve(None, cache_dir=tmp_path / "cache")
    message = str(refused.value)
    assert "javac not found on PATH" in message
    assert "set CLICKSTREAM_FLINK_FORMAT_JAR to its path" in message
    assert "`python -m include.flink_app.format_jar --out jars/` (or `make flink-jars`)" in message


def test_the_command_line_takes_the_prebuilt_jar_from_the_setting(tmp_path, monkeypatch, capsys):
    stale = _with_manifest(format_jar.cached(), tmp_path / format_jar.JAR_NAME, None)
    monkeypatch.setenv("CLICKSTREAM_FLINK_FORMAT_JAR", str(stale))
    assert package.main(["--out", str(tmp_path / "app.zip")]) == 1
    assert f"error: CLICKSTREAM_FLINK_FORMAT_JAR: the format jar {stale}" in capsys.readouterr().err


def test_load_properties_reads_the_env_path_and_names_what_is_missing(tmp_path):
    path = tmp_path / "props.json"
    path.write_text(json.dumps(flink_job.to_application_properties(AWS_GROUPS)))
    assert app_main.load_properties({app_main.LOCAL_PROPERTIES_ENV: str(path)}) == (AWS_GROUPS, True)
    path.write_text(json.dumps({"PropertyGroupId": "x"}))
    with pytest.raises(flink_job.JobConfigError, match="must be a JSON list"):
        app_main.load_properties({app_main.LOCAL_PROPERTIES_ENV: str(path)})
    with pytest.raises(flink_job.JobConfigError, match=f"cannot read application properties {tmp_path}/nope"):
        app_main.load_properties({app_main.LOCAL_PROPERTIES_ENV: str(tmp_path / "nope.json")})


@mock_aws
def test_upload_puts_the_zip_in_s3(tmp_path):
    package.build(tmp_path / "app.zip")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="clickstream-artifacts")
    result = package.upload(s3, "clickstream-artifacts", "flink/app.zip", tmp_path / "app.zip")
    body = s3.get_object(Bucket="clickstream-artifacts", Key="flink/app.zip")["Body"].read()
    assert body == (tmp_path / "app.zip").read_bytes() and result["etag"]
    with pytest.raises(package.PackageError, match="does not exist; build it first"):
        package.upload(s3, "clickstream-artifacts", "flink/app.zip", tmp_path / "missing.zip")
