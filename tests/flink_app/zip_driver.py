"""Run in a subprocess by test_package.py: import the Flink application from an extracted zip ONLY.

``python zip_driver.py APP_DIR PROPERTIES_FILE REPO_ROOT``: drops every ``sys.path`` entry that could provide
the repository's ``include`` (the repo root, editable-install paths), imports the zip's root ``main.py`` the way
Managed Flink does and the packaged entry point module, builds the job from the property file and prints, as
JSON, where everything came from, the templates jinja2 loaded and the job's statements. Starts no JVM.
"""

import json
import sys
from pathlib import Path

app, properties, repo = Path(sys.argv[1]).resolve(), sys.argv[2], Path(sys.argv[3]).resolve()


def _provides_repo_include(entry: str) -> bool:
    path = Path(entry or ".").resolve()
    return path == repo or ((path / "include").is_dir() and not path.is_relative_to(app))


sys.path[:] = [entry for entry in sys.path if not _provides_repo_include(entry)]
sys.path.insert(0, str(app))

import main  # noqa: E402  (the zip's root main.py: puts vendor/ first on sys.path)

# isort: split
import jinja2  # noqa: E402

loaded_templates = []
_get_source = jinja2.FileSystemLoader.get_source


def _recording_get_source(self, environment, name):
    loaded_templates.append(name)
    return _get_source(self, environment, name)


jinja2.FileSystemLoader.get_source = _recording_get_source

import include  # noqa: E402
from include.flink_app import main as entry_point  # noqa: E402

groups, is_local = entry_point.load_properties({entry_point.LOCAL_PROPERTIES_ENV: properties})
job = main.flink_job.job_from_properties(groups)
print(
    json.dumps(
        {
            "sys_path": sys.path,
            "main": main.__file__,
            "include": include.__file__,
            "jinja2": jinja2.__file__,
            "markupsafe": sys.modules["markupsafe"].__file__,
            "modules": {
                name: module.__file__
                for name, module in sys.modules.items()
                if name == "include" or name.startswith("include.")
            },
            "templates": sorted(set(loaded_templates)),
            "unwanted": sorted(
                name
                for name in sys.modules
                if name.split(".")[0]
                in ("airflow", "boto3", "botocore", "duckdb", "localdev", "pyarrow", "pyflink")
            ),
            "is_local": is_local,
            "format_jar": str(main.ZIP_FORMAT_JAR) if main.ZIP_FORMAT_JAR.is_file() else None,
            "ddl": job.ddl,
            "inserts": job.inserts,
            "config": job.config,
        }
    )
)
