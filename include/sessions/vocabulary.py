"""Small vocabularies as DuckDB ENUMs: a session window that sorts or carries a column of few distinct words
(device types, event names, country codes) moves one byte per row instead of a string, in the same order."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from include.sessions.templates import sql_str

#: A column with more distinct words than this stays text (an ENUM of many words saves little and costs a lot).
MAX_ENUM_WORDS = 4096


def small_vocabularies(
    con: duckdb.DuckDBPyConnection, relation: str, columns: Sequence[str]
) -> dict[str, list[str] | None]:
    """Each column's distinct non-NULL words in string order, or None when it has more than MAX_ENUM_WORDS (or
    none at all)."""
    listed = ", ".join(f"list(DISTINCT {column}) FILTER (WHERE {column} IS NOT NULL)" for column in columns)
    names = [f"w{i}" for i in range(len(columns))]
    small = ", ".join(
        f"CASE WHEN len({name}) <= {MAX_ENUM_WORDS} THEN list_sort({name}) END" for name in names
    )
    [row] = con.execute(
        f"SELECT {small} FROM (SELECT {listed} FROM {relation}) AS v({', '.join(names)})"
    ).fetchall()
    return dict(zip(columns, row, strict=True))


def enum_type(words: Sequence[str]) -> str:
    """The SQL type ENUM('w1', 'w2', ...) of the words, in the given order."""
    return f"ENUM({', '.join(map(sql_str, words))})"


def narrow_words(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]) -> str:
    """A relation of ``table`` in which each of ``columns`` with a small vocabulary is an ENUM of its words."""
    vocabularies = small_vocabularies(con, table, columns)
    replaced = [
        f"CAST({column} AS {enum_type(words)}) AS {column}" for column, words in vocabularies.items() if words
    ]
    return f"(SELECT * REPLACE ({', '.join(replaced)}) FROM {table})" if replaced else table
