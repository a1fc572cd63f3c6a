"""Render the Flink and DuckDB SQL templates from one :class:`SessionContract`.

Templates live in ``include/sql/flink/*.sql`` and ``include/sql/batch/*.sql``; both read the contract, the
shared reject rules and the output columns from here, so changing the gap (say) changes both engines.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from include.sessions import contract as contract_module
from include.sessions.contract import SessionContract

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

#: Java DateTimeFormatter pattern of the wire timestamp, as a Flink SQL string literal.
FLINK_TS_FORMAT = "'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''"
#: strftime/strptime pattern of the wire timestamp, as a DuckDB SQL string literal.
DUCKDB_TS_FORMAT = "'%Y-%m-%dT%H:%M:%S.%gZ'"


class TemplateError(ValueError):
    """A template name or a connector option is invalid."""


def sql_str(value: object) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def flink_interval(ms: int) -> str:
    """A Flink SQL interval literal for a duration in milliseconds (leading precision sized to the value)."""
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise TemplateError(f"an interval needs a non-negative integer of milliseconds, got {ms!r}")
    seconds, millis = divmod(ms, 1000)
    precision = max(2, len(str(seconds)))
    if millis == 0:
        return f"INTERVAL '{seconds}' SECOND({precision})"
    return f"INTERVAL '{seconds}.{millis:03d}' SECOND({precision}, 3)"


def with_options(options: Mapping[str, object]) -> str:
    """The body of a Flink ``WITH (...)`` clause; values are rendered as strings, keys must be non-empty."""
    if not options:
        raise TemplateError("connector options are empty: a Flink table needs at least 'connector'")
    lines = []
    for key, value in options.items():
        if not key or not isinstance(key, str):
            raise TemplateError(f"connector option keys must be non-empty strings, got {key!r}")
        if value is None:
            raise TemplateError(f"connector option {key!r} has no value")
        if isinstance(value, bool):
            value = "true" if value else "false"
        lines.append(f"  {sql_str(key)} = {sql_str(value)}")
    return ",\n".join(lines)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(SQL_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["fail"] = _fail
    env.filters.update(sql_str=sql_str, flink_interval=flink_interval, with_options=with_options)
    env.globals.update(
        FLINK_TS_FORMAT=FLINK_TS_FORMAT,
        DUCKDB_TS_FORMAT=DUCKDB_TS_FORMAT,
        REJECT_RULES=contract_module.REJECT_RULES,
        SESSION_FIELDS=contract_module.SESSION_FIELDS,
        METRIC_FIELDS=contract_module.METRIC_FIELDS,
        LATE_FIELDS=contract_module.LATE_FIELDS,
        REJECTED_FIELDS=contract_module.REJECTED_FIELDS,
        CLIENT_EVENT_MAX_LEN=contract_module.CLIENT_EVENT_MAX_LEN,
        SEP="CHR(1)",
    )
    return env


def _fail(message: str) -> None:
    raise TemplateError(message)


def template_names(engine: str) -> list[str]:
    """Renderable templates of one engine (``flink`` or ``batch``); names starting with ``_`` are macros."""
    folder = SQL_DIR / engine
    if engine not in ("flink", "batch") or not folder.is_dir():
        raise TemplateError(f"engine must be 'flink' or 'batch', got {engine!r}")
    return sorted(f"{engine}/{p.name}" for p in folder.glob("*.sql") if not p.name.startswith("_"))


def template_files(names: list[str] | tuple[str, ...]) -> list[Path]:
    """The files rendering these templates reads: each one and what it imports or includes, transitively.

    The Managed Flink zip carries exactly these (see :mod:`include.flink_app.package`).
    """
    env = _environment()
    seen: dict[str, Path] = {}
    todo = [n if n.endswith(".sql") else f"{n}.sql" for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            source, filename, _ = env.loader.get_source(env, name)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"no SQL template {name!r} under {SQL_DIR}") from None
        seen[name] = Path(filename)
        for referenced in jinja2.meta.find_referenced_templates(env.parse(source, name, filename)):
            if referenced is None:
                raise TemplateError(
                    f"template {name!r} imports a template whose name is computed at render time"
                )
            todo.append(referenced)
    return sorted(seen.values())


def render(template_name: str, contract: SessionContract, **connector_options: Any) -> str:
    """Render ``flink/<name>.sql`` or ``batch/<name>.sql`` with the contract and the connector options."""
    if not isinstance(contract, SessionContract):
        raise TemplateError(f"contract must be a SessionContract, got {type(contract).__name__}")
    name = template_name if template_name.endswith(".sql") else f"{template_name}.sql"
    try:
        template = _environment().get_template(name)
    except jinja2.TemplateNotFound:
        raise TemplateError(
            f"no SQL template {name!r} under {SQL_DIR}; known: {template_names('flink') + template_names('batch')}"
        ) from None
    try:
        return template.render(contract=contract, **connector_options)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {name!r} needs a value that was not given: {exc.message}") from None


def split_statements(sql: str) -> list[str]:
    """Split a rendered script on ``;`` outside string literals and ``--`` comments; drop empty statements."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    in_string = False
    while i < n:
        ch = sql[i]
        if in_string:
            current.append(ch)
            if ch == "'":
                if i + 1 < n and sql[i + 1] == "'":
                    current.append("'")
                    i += 1
                else:
                    in_string = False
        elif ch == "'":
            in_string = True
            current.append(ch)
        elif ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            current.append(sql[i:end])
            i = end
            continue
        elif ch == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if in_string:
        raise TemplateError("unterminated string literal in rendered SQL")
    statements.append("".join(current))
    return [s.strip() for s in statements if _has_code(s)]


def _has_code(statement: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in statement.splitlines())
