{#- Macros of the hourly batch sessions and the stream<->batch reconciliation, in two dialects:
    dialect == 'duckdb' (one worker, include/reconciliation) or 'athena' (Trino, CTAS for hours too big for one
    worker, include/reconciliation/athena.py). Only the spelling of a few functions differs; every CTE and
    rule is shared, so the two renders cannot drift. Times are epoch milliseconds (BIGINT) throughout; ISO
    strings (docs/sessions.md) are made only for output. -#}

{% import 'batch/_session_macros.sql' as sessions with context %}

{% macro epoch_ms(ts) -%}
{% if dialect == 'duckdb' %}epoch_ms({{ ts }}){% else %}date_diff('millisecond', TIMESTAMP '1970-01-01 00:00:00.000', {{ ts }}){% endif %}
{%- endmacro %}

{#- Epoch ms of a wire-format string (2026-11-27T10:00:00.000Z); NULL when it is not one. -#}
{% macro parse_iso(expr) -%}
{% if dialect == 'duckdb' -%}
epoch_ms(try_strptime({{ expr }}, {{ DUCKDB_TS_FORMAT }}))
{%- else -%}
date_diff('millisecond', from_iso8601_timestamp('1970-01-01T00:00:00.000Z'), try(from_iso8601_timestamp({{ expr }})))
{%- endif %}
{%- endmacro %}

{#- The wire format of epoch ms: ISO-8601 UTC, milliseconds, trailing Z. -#}
{% macro iso(ms) -%}
{% if dialect == 'duckdb' -%}
strftime(make_timestamp(({{ ms }}) * 1000), {{ DUCKDB_TS_FORMAT }})
{%- else -%}
format_datetime(date_add('millisecond', {{ ms }}, TIMESTAMP '1970-01-01 00:00:00.000'), 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''')
{%- endif %}
{%- endmacro %}

{% macro md5_hex(expr) -%}
{% if dialect == 'duckdb' %}md5({{ expr }}){% else %}lower(to_hex(md5(to_utf8({{ expr }})))){% endif %}
{%- endmacro %}

{% macro regexp(expr, pattern) -%}
{% if dialect == 'duckdb' %}regexp_matches({{ expr }}, {{ pattern }}){% else %}regexp_like({{ expr }}, {{ pattern }}){% endif %}
{%- endmacro %}

{#- Concatenation of expr over a group, in the given order. -#}
{% macro str_agg(expr, sep, order) -%}
{% if dialect == 'duckdb' %}string_agg({{ expr }}, '{{ sep }}' ORDER BY {{ order }}){% else %}array_join(array_agg({{ expr }} ORDER BY {{ order }}), '{{ sep }}'){% endif %}
{%- endmacro %}

{#- A scalar JSON member of a record that may not be JSON at all, as text; NULL otherwise. -#}
{% macro json_str(expr, name) -%}
{% if dialect == 'duckdb' -%}
CASE WHEN json_valid({{ expr }}) THEN json_extract_string({{ expr }}, '$.{{ name }}') END
{%- else -%}
try(json_extract_scalar({{ expr }}, '$.{{ name }}'))
{%- endif %}
{%- endmacro %}

{#- A reject rule (include/sessions/contract.py REJECT_RULES) on a typed row of the compacted table. Typed rows
    are JSON objects with parsed timestamps, so those two rules cannot fail; the others are the same
    predicates as include/sql/batch/_macros.sql. -#}
{% macro typed_check(rule) -%}
{% set f = rule.field %}
{% if rule.check in ('not_json_object', 'bad_timestamp') -%}
FALSE
{%- elif rule.check == 'null' -%}
{{ f }} IS NULL
{%- elif rule.check == 'bad_string' -%}
({{ f }} = '' OR {{ regexp(f, "'[\\x00-\\x1f]'") }})
{%- elif rule.check == 'positive_int' -%}
NOT ({{ f }} BETWEEN 1 AND 2147483647)
{%- elif rule.check == 'too_long' -%}
length({{ f }}) > {{ CLIENT_EVENT_MAX_LEN }}
{%- elif rule.check == 'future' -%}
{{ epoch_ms(f) }} > {{ now_ms }} + {{ contract.max_future_skew_ms }}
{%- else -%}
{{ fail('no typed rendering for reject check ' ~ rule.check) }}
{%- endif %}
{%- endmacro %}

{#- TRUE when the string has no control character (U+0000-U+001F); NULL for NULL. In DuckDB the JSON text of a
    string is the string in quotes unless a character needs an escape (every control character does, and a quote
    or a backslash), which is several times cheaper than a regular expression; FALSE here only means "maybe". -#}
{% macro maybe_no_control_chars(expr) -%}
{% if dialect == 'duckdb' -%}
strlen(CAST(to_json({{ expr }}) AS VARCHAR)) = strlen({{ expr }}) + 2
{%- else -%}
NOT {{ regexp(expr, "'[\\x00-\\x1f]'") }}
{%- endif %}
{%- endmacro %}

{#- TRUE only when no reject rule can fail on a typed row: every string non-empty and free of control characters,
    user_id in range, client_event short enough, the time not too far ahead; NULL or FALSE otherwise (any field
    NULL, or a rule may fail), and then the rule-by-rule CASE decides. Each string is tested on its own:
    concatenating them first costs more than the three extra calls. So TRUE implies every typed_check() is FALSE;
    it only skips the CASE for the common, valid row. -#}
{% macro passes_typed_checks() -%}
(event_id <> '' AND device_id <> '' AND client_event <> '' AND countrycode <> ''
            AND user_id BETWEEN 1 AND 2147483647 AND length(client_event) <= {{ CLIENT_EVENT_MAX_LEN }}
            AND event_ms <= {{ now_ms }} + {{ contract.max_future_skew_ms }}
{% for f in ('event_id', 'device_id', 'client_event', 'countrycode') %}
            AND {{ maybe_no_control_chars(f) }}{{ ')' if loop.last }}
{% endfor %}
{%- endmacro %}

{#- Among copies of an event_id the one first by this order is kept: the smallest (event_ms, client_event,
    countrycode), then user_id, device_id, so that even a full tie has one winner. -#}
{% set COPY_ORDER = 'event_ms, client_event, countrycode, user_id, device_id' %}

{#- CTEs source_events, checked_events and valid_events: the events of the read window [read_start_ms,
    horizon_ms] of a typed source (event_id, user_id, device_id, client_event, client_timestamp TIMESTAMP,
    countrycode), e.g. the compacted Parquet, that pass every reject rule; copies of an event_id included.
    valid_events has id_key (see one_row_per_id) when `with_id_key`. -#}
{% macro valid_event_ctes(source, with_id_key=true) -%}
source_events AS (
    SELECT
        lower(CAST(event_id AS VARCHAR)) AS event_id,
        CAST(user_id AS INTEGER) AS user_id,
        CAST(device_id AS VARCHAR) AS device_id,
        CAST(client_event AS VARCHAR) AS client_event,
        client_timestamp,
        CAST(countrycode AS VARCHAR) AS countrycode,
        {{ epoch_ms('client_timestamp') }} AS event_ms
    FROM {{ source }}
),
checked_events AS (
    SELECT *,
        {# A row that passes every rule by the cheap test skips the rule-by-rule CASE (which names the first
            failing rule); the test is never TRUE for a row the CASE would reject. #}
        CASE WHEN {{ passes_typed_checks() }} THEN NULL ELSE CASE
{% for rule in REJECT_RULES %}
            WHEN {{ typed_check(rule) }} THEN {{ rule.reason | sql_str }}
{% endfor %}
        END END AS reason
    FROM source_events
    WHERE event_ms BETWEEN {{ read_start_ms }} AND {{ horizon_ms }}
),
{# Read three times by one_row_per_id: DuckDB keeps it once (otherwise it pushes the rules into every reader). #}
valid_events AS {{ 'MATERIALIZED ' if dialect == 'duckdb' and with_id_key }}(
    SELECT event_id, user_id, device_id, client_event, countrycode, event_ms
        {{- (', ' ~ ('hash(event_id)' if dialect == 'duckdb' else 'event_id') ~ ' AS id_key') if with_id_key }}
    FROM checked_events
    WHERE reason IS NULL
)
{%- endmacro %}

{#- CTE hour_events (after valid_event_ctes' CTEs): the valid, unique events of the read window; copies of an
    event_id keep the first by COPY_ORDER. (hour_sessions.py builds the DuckDB table in two statements instead:
    hour_events.sql with copies_removed_later, then hour_events_copies.sql.) -#}
{% macro event_ctes(source) -%}
{{ valid_event_ctes(source) }},
{{ sessions.one_row_per_id(
    'hour_events',
    'valid_events',
    'event_id, user_id, device_id, client_event, countrycode, event_ms',
    COPY_ORDER,
) }}
{%- endmacro %}

{#- CTEs raw_copy_counts, rejected_rows and late_ledger over the stream's ledgers and the raw copies.
    late_ledger: one row per event_id of the late ledger, and `never_counted`: every raw copy of the id is a row
    of the late or the rejected ledger (copies - late rows - rejected rows <= 0), so the stream counted none.
    Otherwise it may have: the producer resends events, and a copy that reaches the stream after its dedup
    horizon and the watermark goes to the ledger although the original was counted on time. It may also not
    have: a copy the stream dropped as a duplicate within its horizon leaves no row anywhere. -#}
{% macro late_ledger_ctes(stream_late, stream_rejected, raw_copies) -%}
raw_copy_counts AS (
    SELECT lower(CAST(event_id AS VARCHAR)) AS event_id, max(copies) AS copies FROM {{ raw_copies }} GROUP BY 1
),
rejected_rows AS (
    SELECT event_id, count(*) AS n_rows FROM (
        SELECT lower({{ json_str('record', 'event_id') }}) AS event_id FROM {{ stream_rejected }}
    ) x
    WHERE event_id IS NOT NULL
    GROUP BY event_id
),
late_ledger AS (
    SELECT l.event_id,
        coalesce(c.copies, 1) - l.n_rows - coalesce(x.n_rows, 0) <= 0 AS never_counted
    FROM (
        SELECT lower(CAST(event_id AS VARCHAR)) AS event_id, count(*) AS n_rows
        FROM {{ stream_late }} WHERE event_id IS NOT NULL
        GROUP BY 1
    ) l
    LEFT JOIN raw_copy_counts c ON c.event_id = l.event_id
    LEFT JOIN rejected_rows x ON x.event_id = l.event_id
)
{%- endmacro %}

{#- CTEs <name>_gaps, <name>_numbered and <name>: sessions of `rel` per `part` (a column list) with the
    contract's inclusive gap. `rel` needs event_id and event_ms; `aggs` adds aggregates.
    `count` is count(*) where `rel` has one row per event_id (deduplicated upstream), else count(DISTINCT ...).
    The one definition of a session here: batch sessions, and the re-sessionizing of the late and rule checks. -#}
{% macro sessionize(name, rel, part, aggs='', count='count(*)') -%}
{{ name }}_gaps AS (
    SELECT *,
        CASE WHEN event_ms - lag(event_ms) OVER (PARTITION BY {{ part }} ORDER BY event_ms) <= {{ contract.gap_ms }}
            THEN 0 ELSE 1 END AS starts_session
    FROM {{ rel }}
),
{# Events at the same time are in one session whatever their order; RANGE gives such peers the same number. #}
{{ name }}_numbered AS (
    SELECT *,
        sum(starts_session) OVER (
            PARTITION BY {{ part }} ORDER BY event_ms RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS session_no
    FROM {{ name }}_gaps
),
{{ name }} AS (
    SELECT {{ part }},
        min(event_ms) AS start_ms,
        max(event_ms) AS last_ms,
        {{ count }} AS event_count{{ aggs }}
    FROM {{ name }}_numbered
    GROUP BY {{ part }}, session_no
)
{%- endmacro %}

{#- Whether window_sessions is a DuckDB table (hour_sessions.py builds it; reconcile.sql then gets it as
    `window`): its rowid numbers the sessions for joins, free and without the streaming row_number() OVER (),
    which made the whole build run on one thread. Elsewhere (Athena, one query) the CTE carries bid. -#}
{% macro window_is_table() -%}
{{ 'yes' if dialect == 'duckdb' and events else '' }}
{%- endmacro %}

{#- The join number of window session `alias` (see window_is_table). -#}
{% macro bid(alias) -%}
{{ alias }}.{{ 'rowid' if window_is_table() else 'bid' }}
{%- endmacro %}

{#- CTEs ending in window_sessions: every session of `events` (hour_events' columns; device_id and client_event
    may be ENUMs of their words in string order) with the stream's columns (SESSION_FIELDS) plus start_ms,
    last_ms, in_hour (session_start in H), settled (last_event_at + gap <= the settle horizon) and either
    first_tied (DuckDB's table, see boundary_sessions: hour_sessions_ties.sql then fixes those countrycodes) or
    bid (a row number). -#}
{% macro session_ctes(events) -%}
{{ sessions.boundary_sessions(events, flag_first_ties=window_is_table()) }},
window_sessions AS (
    SELECT
        {{ md5_hex("CAST(user_id AS VARCHAR) || '|' || CAST(device_id AS VARCHAR) || '|' || CAST(start_ms AS VARCHAR)") }} AS session_id,
        user_id,
        CAST(device_id AS VARCHAR) AS device_id,
        {{ iso('start_ms') }} AS session_start,
        {{ iso('last_ms') }} AS last_event_at,
        {{ iso('last_ms + ' ~ contract.gap_ms) }} AS session_end,
        last_ms - start_ms AS duration_ms,
        event_count,
        CAST(first_event AS VARCHAR) AS first_event,
        CAST(last_event AS VARCHAR) AS last_event,
        countrycode,
        start_ms,
        last_ms,
        start_ms >= {{ hour_start_ms }} AND start_ms < {{ hour_end_ms }} AS in_hour,
        last_ms + {{ contract.gap_ms }} <= {{ horizon_ms }} AS settled,
{% if window_is_table() %}
        first_tied
{% else %}
        -- a number for joins within one run (cheaper than the 32-character session_id)
        row_number() OVER () AS bid
{% endif %}
    FROM batch_sessions
)
{%- endmacro %}

{#- CREATE TABLE ... AS for Athena: Parquet at external_location (an empty staging prefix). -#}
{% macro athena_ctas_header() -%}
CREATE TABLE "{{ database }}"."{{ ctas_table }}"
WITH (
    format = 'PARQUET',
    write_compression = 'ZSTD',
    external_location = '{{ external_location }}'
) AS
{%- endmacro %}
