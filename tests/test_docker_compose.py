"""docker-compose.yaml and its two Dockerfiles, checked as far as a machine without a Docker engine can.

* The file is valid against the Compose Specification's JSON schema (vendored in tests/compose_spec/), after
  Compose's own variable interpolation with every default; every variable has a default.
* Every file it names exists: build contexts, Dockerfiles, bind-mounted folders; each Dockerfile is well formed
  (known instructions, FROM first, COPY sources present and not dropped by .dockerignore).
* The layout is the official Airflow 3.3 one (init, API server, scheduler, DAG processor, triggerer on
  PostgreSQL, with their health checks) with Airflow's settings equal to `make up`'s; the DAGs folder is
  docs/deploy-aws.md's, and Airflow itself parses the DAGs in exactly that layout.
* Versions come from the lock: the Airflow image is the locked apache-airflow, the local-aws image installs
  the lock with `uv sync --frozen` (uv itself resolves that command here, dry-run, against uv.lock).
* local-aws runs the modules `make up` runs (compared with the argv of the endpoint `localdev.stack` builds),
  and its command line and health check really run here on loopback and serve S3, Kinesis, Firehose and
  kinesisanalyticsv2 (only 0.0.0.0 becomes 127.0.0.1 and the ports free ones: this machine binds servers to
  loopback only).
* Every published port is bound to 127.0.0.1; aws_default differs from `make up`'s only in its host.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from localdev.aws.endpoint import PROJECT_ROOT
from localdev.processes import descendants
from tests.local_aws.support import free_port_pair, make_client, wait_for

pytestmark = pytest.mark.slow

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
SCHEMA_DIR = Path(__file__).parent / "compose_spec"
AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
ENDPOINT_MODULES = ("localdev.aws.moto_server", "localdev.aws.gateway")


# -- Compose's variable interpolation ---------------------------------------------------------------------
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: dict[str, str], without_default: set[str]) -> Any:
    """``value`` with ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``$$``… resolved as Compose does;
    names used with no default (and absent from ``env``) are added to ``without_default``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env, without_default) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env, without_default) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"]
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else current
        if op in (":+", "+"):
            return arg if current else ""
        if current is None:
            without_default.add(name)
            return ""
        return current

    return _VARIABLE.sub(substitute, value)


RAW = yaml.safe_load(COMPOSE_FILE.read_text())
WITHOUT_DEFAULT: set[str] = set()
# As `docker compose` sees the file with no variable set in the shell or a .env file.
COMPOSE = interpolate(RAW, {}, WITHOUT_DEFAULT)
SERVICES: dict[str, dict] = COMPOSE["services"]


# -- Dockerfiles ------------------------------------------------------------------------------------------
KNOWN_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile: comment lines dropped, ``\\`` continuations joined (default escape)."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("#") or (not pending and not line.strip()):
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    return instructions


def copy_sources(instruction: Instruction) -> tuple[list[str], str]:
    """(sources, destination) of a COPY/ADD, flags such as --chown dropped."""
    words = [word for word in shlex.split(instruction.args) if not word.startswith("--")]
    return words[:-1], words[-1]


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """(negated, regex) per line of .dockerignore, in order (Docker: the last matching pattern wins)."""
    patterns = []
    for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            else:
                char = pattern[i]
                regex += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
                i += 1
        patterns.append((negated, re.compile(regex + r"\Z")))
    return patterns


def sent_to_docker(relative: str, patterns: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether the build context keeps ``relative``: a pattern matching the path or one of its parents."""
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in patterns:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return not excluded


def build_of(service: str) -> tuple[Path, Path]:
    build = SERVICES[service]["build"]
    context = (PROJECT_ROOT / build["context"]).resolve()
    return context, context / build["dockerfile"]


def image_command(dockerfile: Path) -> list[str]:
    (cmd,) = [i for i in parse_dockerfile(dockerfile) if i.keyword == "CMD"]
    command = json.loads(cmd.args)
    assert isinstance(command, list) and all(isinstance(word, str) for word in command), cmd
    return command


# -- shell command lines ----------------------------------------------------------------------------------
OPERATORS = {";", "&", "&&", "||", "|"}


def shell_tokens(script: str) -> list[str]:
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def simple_commands(script: str) -> list[list[str]]:
    """The simple commands of a one-line ``sh -c`` script, split at ``;``, ``&``, ``&&``, ``||``, ``|``."""
    commands, current = [], []
    for token in shell_tokens(script):
        if token in OPERATORS:
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [command for command in [*commands, current] if command]


def python_modules(script: str) -> dict[str, list[str]]:
    """``[exec] python -m <module> <args>`` commands of a script → {module: args}."""
    found = {}
    for words in simple_commands(script):
        words = words[1:] if words[0] == "exec" else words
        if words[:2] == ["python", "-m"]:
            found[words[2]] = words[3:]
    return found


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def local_aws_script() -> str:
    shell, flag, script = image_command(build_of("local-aws")[1])
    assert (shell, flag) == ("sh", "-c")
    return script


def published(service: str) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each port a service publishes (short syntax)."""
    out = []
    for port in SERVICES[service].get("ports", []):
        assert isinstance(port, str | int), f"{service}: use the short port syntax, not {port!r}"
        parts = str(port).split(":")
        host_ip = parts[0] if len(parts) == 3 else ""  # no address: every interface of the host
        host_port = int(parts[-2]) if len(parts) > 1 else 0  # no host port: an ephemeral one
        out.append((host_ip, host_port, int(parts[-1])))
    return out


def makefile_recipe(target: str) -> list[str]:
    lines = (PROJECT_ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{re.escape(target)}:", line))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def makefile_variable(name: str) -> str:
    match = re.search(rf"^{name} *[:?]?= *(\S+)$", (PROJECT_ROOT / "Makefile").read_text(), re.M)
    assert match, f"Makefile defines no {name}"
    return match.group(1)


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"] if "version" in package}


def make_up_stack(tmp_path: Path):
    """The stack `make up` starts (its recipe's module and ports), built in a throwaway state directory."""
    (command,) = [line for line in makefile_recipe("up") if "python -m" in line]
    words = shlex.split(command.replace("$(RUN)", "").replace("$(PORT)", makefile_variable("PORT")))
    assert words[:4] == ["python", "-m", "localdev.stack", "up"], command
    from localdev.stack import Stack

    return Stack(tmp_path / "stack", aws_port=int(option(words, "--aws-port")), api_port=8080)


# -- the file itself --------------------------------------------------------------------------------------
def test_the_file_is_valid_against_the_compose_specification():
    schema_file = SCHEMA_DIR / "compose-spec.json"
    noted = re.search(r"sha256: ([0-9a-f]{64})", (SCHEMA_DIR / "README.md").read_text()).group(1)
    assert hashlib.sha256(schema_file.read_bytes()).hexdigest() == noted, "the vendored schema was changed"
    schema = json.loads(schema_file.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    for label, document in (("as written", RAW), ("interpolated", COMPOSE)):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, f"docker-compose.yaml ({label}): " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
        )
    # The schema is strict about service keys (so the check above means something).
    misspelled = {**COMPOSE, "services": {**SERVICES, "postgres": {**SERVICES["postgres"], "helthcheck": {}}}}
    assert any("helthcheck" in e.message for e in validator.iter_errors(misspelled))
    assert not WITHOUT_DEFAULT, f"variables with no default: {sorted(WITHOUT_DEFAULT)}"


def test_every_published_port_is_bound_to_loopback():
    ports = [(name, port) for name in SERVICES for port in published(name)]
    assert {name for name, _ in ports} == {"airflow-apiserver", "local-aws"}
    for name, (host_ip, _, _) in ports:
        assert host_ip == "127.0.0.1", f"{name} publishes a port on {host_ip or 'every interface'}"
    for name, service in SERVICES.items():
        assert service.get("network_mode") != "host", f"{name} uses the host's network"


def test_every_file_the_compose_file_names_exists():
    for name, service in SERVICES.items():
        if "build" in service:
            context, dockerfile = build_of(name)
            assert context.is_dir(), f"{name}: build context {context} is missing"
            assert dockerfile.is_file(), f"{name}: Dockerfile {dockerfile} is missing"
        for env_file in service.get("env_file", []):
            path = env_file if isinstance(env_file, str) else env_file["path"]
            assert (PROJECT_ROOT / path).is_file(), f"{name}: env_file {path} is missing"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (PROJECT_ROOT / source).is_dir(), f"{name}: mounts {source}, which does not exist"
            else:
                assert source in COMPOSE.get("volumes", {}), f"{name}: volume {source} is not declared"


@pytest.mark.parametrize("service", ["local-aws", "airflow-apiserver"])
def test_each_dockerfile_is_well_formed_and_copies_only_what_the_context_sends(service):
    context, dockerfile = build_of(service)
    instructions = parse_dockerfile(dockerfile)
    unknown = [(i.line, i.keyword) for i in instructions if i.keyword not in KNOWN_INSTRUCTIONS]
    assert not unknown, f"{dockerfile}: unknown instructions {unknown}"
    first = next(i for i in instructions if i.keyword != "ARG")
    assert first.keyword == "FROM", f"{dockerfile}: line {first.line} comes before FROM"
    assert sum(i.keyword == "FROM" for i in instructions) == 1, "one stage expected"
    patterns = dockerignore_patterns()
    copies = [i for i in instructions if i.keyword in ("COPY", "ADD")]
    assert copies, f"{dockerfile} copies nothing"
    for copy in copies:
        sources, _ = copy_sources(copy)
        for source in sources:
            path = context / source
            assert path.exists(), f"{dockerfile}:{copy.line}: COPY source {source} does not exist"
            files = (
                [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
            )
            assert files, f"{dockerfile}:{copy.line}: {source} holds no file to copy"
            for file in files:
                relative = file.relative_to(context).as_posix()
                assert sent_to_docker(relative, patterns), (
                    f".dockerignore drops {relative} ({dockerfile}:{copy.line})"
                )
    # What must never reach the daemon: the local environment, state and metadata DB, the git history.
    for private in (
        ".venv/bin/python",
        ".local/postgres/data/PG_VERSION",
        ".git/HEAD",
        "include/__pycache__/x.pyc",
    ):
        assert not sent_to_docker(private, patterns), f".dockerignore lets {private} into the build context"


# -- Airflow ----------------------------------------------------------------------------------------------
def test_the_airflow_services_follow_the_official_layout_on_postgres():
    assert set(SERVICES) == {"postgres", "local-aws", "airflow-init", "airflow-cli", *AIRFLOW_COMPONENTS}
    assert SERVICES["airflow-cli"]["profiles"] == [
        "debug"
    ]  # started only on request, as in the official file
    postgres = SERVICES["postgres"]["environment"]
    for name, command in AIRFLOW_COMPONENTS.items():
        service = SERVICES[name]
        assert service["command"] == command, name
        assert service["healthcheck"]["test"], f"{name} has no health check"
        depends = {dep: spec["condition"] for dep, spec in service["depends_on"].items()}
        assert depends == {
            "postgres": "service_healthy",
            "local-aws": "service_healthy",
            "airflow-init": "service_completed_successfully",
        }, name
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
            f"postgresql+psycopg2://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
            f"@postgres/{postgres['POSTGRES_DB']}"
        ), name
        api_port = published("airflow-apiserver")[0][2]
        assert (
            env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
            == f"http://airflow-apiserver:{api_port}/execution/"
        )
        assert service["build"] == SERVICES["airflow-init"]["build"], f"{name} runs another image than init"
    init = SERVICES["airflow-init"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "airflow config list" in init["command"][-1]  # writes airflow.cfg (shared JWT secret, fernet key)
    assert SERVICES["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]


def test_airflow_settings_are_make_ups_and_only_aws_default_points_elsewhere(tmp_path):
    from airflow.models.connection import Connection

    env = SERVICES["airflow-scheduler"]["environment"]
    local = make_up_stack(tmp_path).env()
    for key in (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CORE__AUTH_MANAGER",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT",
    ):
        assert env[key].lower() == local[key].lower(), f"{key}: compose {env[key]!r}, make up {local[key]!r}"
    assert env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False") == "False"

    gateway = python_modules(local_aws_script())["localdev.aws.gateway"]
    compose_conn = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    local_conn = json.loads(local["AIRFLOW_CONN_AWS_DEFAULT"])
    assert compose_conn["extra"]["endpoint_url"] == f"http://local-aws:{option(gateway, '--port')}"
    assert local_conn["extra"]["endpoint_url"] == f"http://127.0.0.1:{option(gateway, '--port')}"
    compose_conn["extra"]["endpoint_url"] = local_conn["extra"]["endpoint_url"]
    assert compose_conn == local_conn, "aws_default differs from make up's in more than its host"
    assert Connection(conn_id="aws_default", **json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])).conn_type == "aws"
    # Nothing else points Airflow at a non-AWS endpoint or gives it credentials of its own.
    others = [key for key in env if key.startswith("AWS_") or "ENDPOINT" in key]
    assert not others, f"AWS settings besides aws_default in the Airflow environment: {others}"


def test_the_dags_folder_is_the_deployment_layout_and_airflow_parses_it(tmp_path):
    """docs/deploy-aws.md: dags/*.py and include/ in the DAGs folder (include/ in .airflowignore), plugins/
    as the plugins folder. The container's folders are rebuilt here from the mounts and parsed by Airflow."""
    env = SERVICES["airflow-dag-processor"]["environment"]
    dags_folder, plugins_folder = env["AIRFLOW__CORE__DAGS_FOLDER"], env["AIRFLOW__CORE__PLUGINS_FOLDER"]
    mounts = {}
    for volume in SERVICES["airflow-dag-processor"]["volumes"]:
        source, target, *mode = volume.split(":")
        if source.startswith("./"):
            mounts[source[2:]] = target
            assert mode == ["ro"], f"{volume}: the project's folders are mounted read-only"
    assert set(mounts) == {"dags", "include", "plugins"}
    assert Path(mounts["dags"]).parent.as_posix() == dags_folder
    assert mounts["include"] == f"{dags_folder}/include"
    assert mounts["plugins"] == plugins_folder
    assert env["PYTHONPATH"] == dags_folder  # include.… importable in every component, the API server too

    # The image creates both mount points (so Docker never creates one inside the checkout) and the ignore file.
    _, dockerfile = build_of("airflow-dag-processor")
    runs = " ".join(i.args for i in parse_dockerfile(dockerfile) if i.keyword == "RUN")
    mkdir = re.search(r"mkdir -p ([^&;]+)", runs).group(1).split()
    assert {mounts["dags"], mounts["include"]} <= set(mkdir), mkdir
    ignore = re.search(rf"printf '([^']*)' > {re.escape(dags_folder)}/\.airflowignore", runs)
    assert ignore, f"{dockerfile} writes no {dags_folder}/.airflowignore"

    # The container's DAGs folder, from the same sources, parsed by Airflow with the container's PYTHONPATH.
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / ".airflowignore").write_text(ignore.group(1).encode().decode("unicode_escape"))
    (folder / Path(mounts["dags"]).name).symlink_to(PROJECT_ROOT / "dags")
    (folder / "include").symlink_to(PROJECT_ROOT / "include")
    script = (
        "import json, include\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(folder)!r})\n"
        "errors = {path: str(error) for path, error in bag.import_errors.items()}\n"
        "files = sorted(stat.file for stat in bag.dagbag_stats)\n"
        "print(json.dumps({'include': include.__file__, 'errors': errors, 'dags': sorted(bag.dag_ids), 'files': files}))\n"
    )
    child_env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    child_env.update(
        AIRFLOW_HOME=str(tmp_path / "home"),
        AIRFLOW__CORE__DAGS_FOLDER=str(folder),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'airflow.db'}",
        PYTHONPATH=str(folder),
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["include"] == str(folder / "include" / "__init__.py"), (
        "include/ not imported from the DAGs folder"
    )
    assert parsed["errors"] == {}, parsed["errors"]
    expected = sorted(path.stem for path in (PROJECT_ROOT / "dags").glob("*.py"))
    assert parsed["dags"] == expected
    dags_mount = Path(mounts["dags"]).name
    assert parsed["files"] == [f"{dags_mount}/{name}.py" for name in expected], (
        "files parsed besides the DAGs"
    )


def test_the_airflow_image_is_the_locked_airflow_with_the_deployment_requirements():
    version = locked_versions()["apache-airflow"]
    python = makefile_variable("PY_VERSION")
    _, dockerfile = build_of("airflow-apiserver")
    instructions = parse_dockerfile(dockerfile)
    (base,) = [i.args for i in instructions if i.keyword == "FROM"]
    assert base == f"apache/airflow:{version}-python{python}", f"{dockerfile}: FROM {base}"
    (copy,) = [i for i in instructions if i.keyword == "COPY" and "mwaa.txt" in i.args]
    sources, destination = copy_sources(copy)
    assert sources == ["requirements/mwaa.txt"]
    (install,) = [shlex.split(i.args) for i in instructions if i.keyword == "RUN" and "pip install" in i.args]
    assert f"apache-airflow=={version}" in install, f"{dockerfile} lets pip move Airflow: {install}"
    assert option(install, "-r") == destination
    constraint = next(
        line
        for line in (PROJECT_ROOT / "requirements/mwaa.txt").read_text().splitlines()
        if "--constraint" in line
    )
    assert f"constraints-{version}/constraints-{python}.txt" in constraint, constraint
    assert SERVICES["airflow-apiserver"]["image"].endswith(f":{version}")


# -- local-aws --------------------------------------------------------------------------------------------
def test_the_local_aws_image_installs_the_locked_environment(tmp_path):
    _, dockerfile = build_of("local-aws")
    instructions = parse_dockerfile(dockerfile)
    (base,) = [i.args for i in instructions if i.keyword == "FROM"]
    assert base.startswith(f"python:{makefile_variable('PY_VERSION')}-"), base
    runs = [i for i in instructions if i.keyword == "RUN"]
    assert any("openjdk-17-jre-headless" in i.args for i in runs), "no Java 17 for PyFlink"
    # pip installs only uv, at the Makefile's version; every Python package comes from `uv sync --frozen`.
    pip = [shlex.split(i.args) for i in runs if "pip install" in i.args]
    assert pip == [["pip", "install", "--no-cache-dir", f"uv=={makefile_variable('UV_VERSION')}"]], pip
    syncs = [
        (n, shlex.split(i.args))
        for n, i in enumerate(instructions)
        if i.keyword == "RUN" and "uv sync" in i.args
    ]
    assert syncs and not any("uv pip" in i.args or "uv add" in i.args for i in runs)
    groups = set()
    for index, words in syncs:
        assert words[:2] == ["uv", "sync"] and "--frozen" in words, words
        copied = {s for i in instructions[:index] if i.keyword == "COPY" for s in copy_sources(i)[0]}
        assert {"pyproject.toml", "uv.lock"} <= copied, (
            f"uv sync at line {instructions[index].line} without the lock"
        )
        groups.add(tuple(word for word in words if word not in ("--no-install-project",)))
    assert len(groups) == 1, f"the two uv sync steps install different groups: {groups}"
    flags = list(next(iter(groups)))[2:]
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    wanted = [option(flags, "--group")]
    assert "--no-default-groups" in flags and wanted == ["local"], flags
    assert {"apache-flink", "moto"} <= {
        re.split(r"[\[=<>]", d)[0] for d in pyproject["dependency-groups"]["local"]
    }

    # uv itself reads that command against the committed lock (dry run: nothing is installed or downloaded).
    uv = shutil.which("uv") or str(PROJECT_ROOT / ".tools/bin/uv")
    assert Path(uv).exists(), "no uv (`make sync` bootstraps it into .tools/)"
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    result = subprocess.run(
        [uv, "sync", *flags, "--no-install-project", "--dry-run"],
        cwd=tmp_path,
        env={
            **os.environ,
            "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"),
            "UV_PYTHON": sys.executable,
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_OFFLINE": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    planned = dict(re.findall(r"^ \+ ([A-Za-z0-9_.-]+)==(\S+)$", result.stdout + result.stderr, re.M))
    locked = locked_versions()
    assert {"apache-flink", "moto", "boto3", "duckdb"} <= set(planned), sorted(planned)
    assert {name: locked.get(name) for name in planned} == planned, "uv would install versions the lock lacks"
    needed_elsewhere = {
        dep["name"]
        for package in tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())["package"]
        if package["name"] != pyproject["project"]["name"]
        for dep in package.get("dependencies", [])
    }
    dev_only = {re.split(r"[\[=<>]", d)[0] for d in pyproject["dependency-groups"]["dev"]} - needed_elsewhere
    assert dev_only and not dev_only & set(planned), (
        f"test tools in the endpoint's image: {dev_only & set(planned)}"
    )


def test_local_aws_runs_the_modules_make_up_runs(tmp_path):
    script = local_aws_script()
    modules = python_modules(script)
    assert list(modules) == list(ENDPOINT_MODULES), modules
    endpoint = make_up_stack(tmp_path)._endpoint()
    for module, proc in zip(ENDPOINT_MODULES, (endpoint.moto, endpoint.companion), strict=True):
        assert proc.argv[1:3] == ["-m", module], proc.argv
        ours, theirs = modules[module], proc.argv[3:]
        assert ours[::2] == theirs[::2], (
            f"{module}: options {ours[::2]} in the image, {theirs[::2]} in make up"
        )
        differ = {ours[i] for i in range(0, len(ours), 2) if ours[i + 1] != theirs[i + 1]}
        # Only where a container must differ: the companion listens on the container's network, and keeps its
        # state in the container rather than under .local/.
        allowed = {"--host", "--state-dir"} if module == "localdev.aws.gateway" else set()
        assert differ <= allowed, f"{module}: {differ} differ from make up's {theirs}"
    gateway = modules["localdev.aws.gateway"]
    assert option(gateway, "--host") == "0.0.0.0"
    assert published("local-aws")[0][2] == int(option(gateway, "--port"))
    health = SERVICES["local-aws"]["healthcheck"]["test"]
    assert health[:5] == ["CMD", "python", "-m", "localdev.aws", "status"], health
    assert option(health, "--port") == option(gateway, "--port")
    assert option(health, "--moto-port") == option(gateway, "--moto-port")
    # The companion's state goes with moto's, as `python -m localdev.aws up` does when it starts moto.
    assert ["rm", "-rf", f"{option(gateway, '--state-dir')}/services"] in simple_commands(script)
    assert (
        SERVICES["local-aws"]["init"] is True
    )  # SIGTERM reaches the companion (it flushes, stops Flink jobs)


@pytest.fixture
def compose_endpoint(tmp_path: Path):
    """local-aws's command line and health check, on free loopback ports with a state directory here."""
    script = local_aws_script()
    gateway = python_modules(script)["localdev.aws.gateway"]
    state_dir = option(gateway, "--state-dir")
    port = free_port_pair()
    replace = {
        "0.0.0.0": "127.0.0.1",
        option(gateway, "--port"): str(port),
        option(gateway, "--moto-port"): str(port + 1),
    }
    local_state = tmp_path / "state"

    def adapt(token: str) -> str:
        if token.startswith(state_dir):
            return str(local_state) + token[len(state_dir) :]
        return replace.get(token, token)

    local_script = " ".join(t if t in OPERATORS else shlex.quote(adapt(t)) for t in shell_tokens(script))
    health = [adapt(word) for word in SERVICES["local-aws"]["healthcheck"]["test"][1:]]
    (local_state / "services" / "firehose").mkdir(parents=True)
    (local_state / "services" / "firehose" / "stale.json").write_text("{}")  # left by an earlier start
    env = {
        **os.environ,
        **SERVICES["local-aws"]["environment"],
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    log = open(tmp_path / "local-aws.log", "wb")  # noqa: SIM115 - closed at the end
    proc = subprocess.Popen(
        ["sh", "-c", local_script],
        cwd=PROJECT_ROOT,  # the image's WORKDIR holds the same tree
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", proc, health, local_state, env
    finally:
        for sig, timeout in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # moto, started by the script in this session's group
        except ProcessLookupError:
            pass
        log.close()


def test_the_local_aws_command_line_and_health_check_run(compose_endpoint):
    url, proc, health, state, env = compose_endpoint

    def healthcheck() -> int:
        return subprocess.run(health, cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=60).returncode

    def healthy() -> bool:
        assert proc.poll() is None, "the local-aws command exited"
        return healthcheck() == 0

    wait_for(healthy, 90, "local-aws's health check to pass", interval=0.5)
    assert not (state / "services" / "firehose" / "stale.json").exists(), "the companion kept a stale state"

    s3 = make_client(url, "s3")
    s3.create_bucket(Bucket="compose-check")
    s3.put_object(Bucket="compose-check", Key="a.txt", Body=b"hello")
    assert s3.get_object(Bucket="compose-check", Key="a.txt")["Body"].read() == b"hello"
    kinesis = make_client(url, "kinesis")
    kinesis.create_stream(StreamName="compose-events", ShardCount=1)
    assert kinesis.list_streams()["StreamNames"] == ["compose-events"]
    assert make_client(url, "firehose").list_delivery_streams()["DeliveryStreamNames"] == []
    assert make_client(url, "kinesisanalyticsv2").list_applications()["ApplicationSummaries"] == []

    # In the container the companion's --host 0.0.0.0 is also where it reaches moto: Linux routes a connection
    # to 0.0.0.0 to the loopback address moto listens on.
    moto_port = int(url.rsplit(":", 1)[1]) + 1
    connection = http.client.HTTPConnection("0.0.0.0", moto_port, timeout=10)
    connection.request("GET", "/")
    assert connection.getresponse().status < 500
    connection.close()

    # The health check covers moto too: with moto gone the companion still answers, the check fails.
    (moto,) = [
        pid
        for pid, _ in descendants(proc.pid)
        if b"localdev.aws.moto_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    os.kill(moto, signal.SIGKILL)
    wait_for(lambda: healthcheck() != 0, 30, "the health check to fail without moto", interval=0.5)
    assert proc.poll() is None
