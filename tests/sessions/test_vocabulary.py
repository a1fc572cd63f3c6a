"""Small vocabularies as ENUMs (include.sessions.vocabulary): the words in string order, or None."""

from __future__ import annotations

import duckdb
import pytest

from include.sessions import vocabulary


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM (VALUES ('tablet', 'b'), ('mobile', NULL), ('tablet', 'a'), "
        "('Z''s', 'c')) v(device_id, client_event)"
    )
    yield con
    con.close()


def test_words_in_string_order_without_null(con):
    assert vocabulary.small_vocabularies(con, "t", ("device_id", "client_event")) == {
        "device_id": ["Z's", "mobile", "tablet"],
        "client_event": ["a", "b", "c"],
    }


def test_too_many_words_or_none_at_all_stay_text(con, monkeypatch):
    monkeypatch.setattr(vocabulary, "MAX_ENUM_WORDS", 2)
    assert vocabulary.small_vocabularies(con, "t", ("device_id",)) == {"device_id": None}
    assert vocabulary.small_vocabularies(con, "(SELECT * FROM t WHERE FALSE)", ("device_id",)) == {
        "device_id": None
    }
    assert vocabulary.narrow_words(con, "(SELECT * FROM t WHERE FALSE)", ("device_id",)).endswith(
        "WHERE FALSE)"
    )


def test_narrowed_relation_sorts_like_the_text(con):
    relation = vocabulary.narrow_words(con, "t", ("device_id", "client_event"))
    [(kind,)] = con.execute(f"SELECT DISTINCT typeof(device_id) FROM {relation}").fetchall()
    assert kind == "ENUM('Z''s', 'mobile', 'tablet')"
    narrowed = con.execute(
        f"SELECT device_id::VARCHAR, client_event::VARCHAR FROM {relation} ORDER BY 1, 2"
    ).fetchall()
    assert narrowed == con.execute("SELECT * FROM t ORDER BY 1, 2").fetchall()
