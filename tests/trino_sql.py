"""Is an Athena render Trino SQL? No Trino runs here, so a parser stands in: the statement must parse with
sqlglot's Trino grammar, and every function it calls must be one sqlglot knows for Trino or one of the few real
Trino functions it does not model (listed here). A DuckDB spelling that slips into a render (epoch_ms, strftime,
hash, strlen, to_json, ...) is an unknown function to that grammar."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

#: Trino functions sqlglot 30 parses as unknown (each checked against Trino's function reference).
TRINO_FUNCTIONS_NOT_MODELLED = frozenset({"format_datetime"})


def trino_problems(sql: str) -> list[str]:
    """What makes ``sql`` not Trino SQL: a parse error, or the functions no Trino grammar knows."""
    try:
        tree = sqlglot.parse_one(sql, read="trino")
    except sqlglot.errors.ParseError as exc:
        return [f"does not parse as Trino SQL: {exc}"]
    unknown = sorted({f.name for f in tree.find_all(exp.Anonymous)} - TRINO_FUNCTIONS_NOT_MODELLED)
    return [f"calls {name}(), which is not a Trino function" for name in unknown]
