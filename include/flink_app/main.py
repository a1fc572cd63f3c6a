"""Entry point of the Managed Service for Apache Flink application (runtime FLINK-2_3, Python Table API).

On AWS, Managed Flink runs this file from the application zip (property group
``kinesis.analytics.flink.run.options``: ``python`` = ``main.py``, ``jarfile`` = the Kinesis SQL connector under
``lib/``; :func:`run` adds the source format's jar, also under ``lib/``) and writes the application's property
groups to ``/etc/flink/application_properties.json``. Locally,
point ``CLICKSTREAM_FLINK_PROPERTIES`` at a file of the same format and run ``python -m include.flink_app.main``
(the local runner, :mod:`localdev.flink_runner`, calls :func:`run` the same way). Either way the job is
built by :func:`include.flink_app.flink_job.job_from_properties`: only the connector options differ.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
# In the zip, main.py sits at the root beside include/ and vendor/ (jinja2 and markupsafe, pure Python):
# Managed Flink installs no pip packages, so everything the planner-side code imports travels in the zip.
if (_HERE / "include").is_dir() and str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))
if (_HERE / "vendor").is_dir() and str(_HERE / "vendor") not in sys.path:
    sys.path.insert(0, str(_HERE / "vendor"))

from include.flink_app import flink_job  # noqa: E402

AWS_PROPERTIES_PATH = Path("/etc/flink/application_properties.json")
#: The source format's jar in the application zip (include/flink_app/package.py puts it there); a local run
#: passes its own build on ``pipeline.jars`` instead.
ZIP_FORMAT_JAR = _HERE / "lib" / flink_job.FORMAT_JAR
LOCAL_PROPERTIES_ENV = "CLICKSTREAM_FLINK_PROPERTIES"


def load_properties(environ: dict[str, str] | None = None) -> tuple[dict[str, dict[str, str]], bool]:
    """The application's property groups and whether this is a local run (the env var wins over AWS's file)."""
    environ = os.environ if environ is None else environ
    local_path = environ.get(LOCAL_PROPERTIES_ENV)
    if local_path:
        path, is_local = Path(local_path), True
    elif AWS_PROPERTIES_PATH.is_file():
        path, is_local = AWS_PROPERTIES_PATH, False
    else:
        raise flink_job.JobConfigError(
            f"no application properties: set {LOCAL_PROPERTIES_ENV} to a JSON file of PropertyGroupId/"
            f"PropertyMap objects, or run on Managed Flink (which writes {AWS_PROPERTIES_PATH})"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise flink_job.JobConfigError(f"cannot read application properties {path}: {exc}") from None
    return flink_job.parse_application_properties(data), is_local


def run(
    groups: dict[str, dict[str, str]],
    runtime_config: dict[str, str] | None = None,
    timings: dict[str, float] | None = None,
) -> Any:
    """Build the job from the property groups and submit it; returns the TableResult.

    ``runtime_config`` adds Flink configuration (the local runner's parallelism, checkpoints, restore path);
    on AWS the service owns those. ``timings`` receives when the JVM was ready and when the job was submitted.
    """
    job = flink_job.job_from_properties(groups)
    config = {**(runtime_config or {}), **job.config}
    if ZIP_FORMAT_JAR.is_file():
        config = flink_job.with_jar(config, ZIP_FORMAT_JAR)
    elif flink_job.FORMAT_JAR not in config.get("pipeline.jars", ""):
        raise flink_job.JobConfigError(
            f"the events source's format {flink_job.SOURCE_FORMAT!r} needs {flink_job.FORMAT_JAR} on "
            f"pipeline.jars: not in {ZIP_FORMAT_JAR.parent} (the application zip's lib/) and not configured"
        )
    t_env = flink_job.create_table_env(config)
    if timings is not None:
        timings["env_ready"] = time.time()
    result = flink_job.submit(t_env, job)
    if timings is not None:
        timings["submitted"] = time.time()
    return result


def main() -> None:
    groups, is_local = load_properties()
    result = run(groups)
    if is_local:
        # On AWS the main method must return after submitting; locally keep the process (and its JVM) alive.
        result.wait()


if __name__ == "__main__":
    main()
