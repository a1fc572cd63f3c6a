"""Rendering of the Athena CTAS variant of compaction (``include/sql/batch/compaction_ctas.sql``).

Athena cannot bind parameters into DDL, so every value is validated here before it is placed in the SQL; the
limitations of the SQL variant are documented at the top of the template.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import jinja2

from include.compaction import layout
from include.events_schema import CLIENT_EVENT_MAX_LEN, COUNTRY_CODES, DEVICE_IDS, USER_ID_MAX, USER_ID_MIN

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "sql" / "batch" / "compaction_ctas.sql"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,254}$")
_S3_LOCATION = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9_./=-]*/$")


def _identifier(name: str, value: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(
            f"{name} must be a lower-case Glue/Athena identifier ([a-z_][a-z0-9_]*), got {value!r}"
        )
    return value


def _literal_list(values: list[str]) -> str:
    for v in values:
        if "'" in v:
            raise ValueError(f"value {v!r} cannot be placed in a SQL literal")
    return ", ".join(f"'{v}'" for v in values)


def render_compaction_ctas(
    *,
    database: str,
    raw_table: str,
    ctas_table: str,
    external_location: str,
    hour_start: datetime,
    now: datetime,
    max_future_skew: timedelta = timedelta(minutes=5),
) -> str:
    """The CTAS statement compacting ``hour_start`` into ``external_location`` (an empty staging prefix)."""
    hour = layout.normalize_hour(hour_start)
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValueError(f"now must be a timezone-aware datetime, got {now!r}")
    if not isinstance(external_location, str) or not _S3_LOCATION.match(external_location):
        raise ValueError(
            "external_location must look like s3://bucket/prefix/ (ending with '/', no quotes or spaces), "
            f"got {external_location!r}"
        )
    event_date, event_hour = layout.hour_partition(hour)
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    future_limit = (now + max_future_skew).astimezone(hour.tzinfo)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    template = env.from_string(TEMPLATE_PATH.read_text())
    return template.render(
        database=_identifier("database", database),
        raw_table=_identifier("raw_table", raw_table),
        ctas_table=_identifier("ctas_table", ctas_table),
        external_location=external_location,
        event_date=event_date,
        event_hour=event_hour,
        hour_start=hour.strftime(fmt)[:-3],
        hour_end=(hour + timedelta(hours=1)).strftime(fmt)[:-3],
        future_limit=future_limit.strftime(fmt)[:-3],
        user_id_min=USER_ID_MIN,
        user_id_max=USER_ID_MAX,
        client_event_max_len=CLIENT_EVENT_MAX_LEN,
        device_ids=_literal_list(list(DEVICE_IDS)),
        country_codes=_literal_list(sorted(COUNTRY_CODES)),
    )
