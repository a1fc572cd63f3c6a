{#- DuckDB macros shared by the batch templates: the same definitions as include/sql/flink/_macros.sql, in the
    DuckDB dialect. Timestamps are handled as epoch milliseconds and plain (UTC) TIMESTAMPs, so the DuckDB
    session time zone never matters. -#}

{% import 'batch/_session_macros.sql' as s with context %}

{#- The six members read from a raw record, in this order. -#}
{% set EVENT_MEMBERS = ('event_id', 'user_id', 'device_id', 'client_event', 'client_timestamp', 'countrycode') %}

{% macro member_paths() -%}
[{% for name in EVENT_MEMBERS %}'$.{{ name }}'{{ ', ' if not loop.last }}{% endfor %}]
{%- endmacro %}

{#- Member i of the raw record as a string; NULL when missing, JSON null, an object/array or bad JSON (what
    Flink's JSON_VALUE returns). `members` holds each member's JSON text (a string member starts with a quote),
    `texts` the same members as strings. -#}
{% macro member(i) -%}
CASE WHEN NOT (members[{{ i }}] = 'null' OR starts_with(members[{{ i }}], '{') OR starts_with(members[{{ i }}], '['))
    THEN texts[{{ i }}] END
{%- endmacro %}

{% macro epoch_ms(expr) -%}
epoch_ms(try_strptime({{ expr }}, {{ DUCKDB_TS_FORMAT }}))
{%- endmacro %}

{% macro iso(ms_expr) -%}
strftime(make_timestamp(({{ ms_expr }}) * 1000), {{ DUCKDB_TS_FORMAT }})
{%- endmacro %}

{% macro check(rule) -%}
{% set f = rule.field %}
{% if rule.check == 'not_json_object' -%}
NOT COALESCE(is_object, FALSE)
{%- elif rule.check == 'null' -%}
{{ f }} IS NULL
{%- elif rule.check == 'bad_string' -%}
({{ f }} = '' OR regexp_matches({{ f }}, '[\x00-\x1f]'))
{%- elif rule.check == 'positive_int' -%}
NOT COALESCE(regexp_full_match({{ f }}, '[0-9]{1,10}') AND TRY_CAST({{ f }} AS BIGINT) BETWEEN 1 AND 2147483647, FALSE)
{%- elif rule.check == 'too_long' -%}
length({{ f }}) > {{ CLIENT_EVENT_MAX_LEN }}
{%- elif rule.check == 'bad_timestamp' -%}
NOT COALESCE(strftime(parsed_ts, {{ DUCKDB_TS_FORMAT }}) = {{ f }}, FALSE)
{%- elif rule.check == 'future' -%}
epoch_ms(parsed_ts) > epoch_ms(now()) + {{ contract.max_future_skew_ms }}
{%- else -%}
{{ fail('no DuckDB rendering for reject check ' ~ rule.check) }}
{%- endif %}
{%- endmacro %}

{#- TRUE only when no reject rule can fail (NULL or FALSE otherwise: then the rule-by-rule CASE decides): a
    cheap test for the common, valid row. No control character in the four strings: their JSON text is the
    concatenation in quotes (every control character needs an escape); user_id: the canonical text of a
    positive INTEGER, so it matches [0-9]{1,10} and is in range. -#}
{% macro passes_every_rule() -%}
(is_object AND event_id <> '' AND device_id <> '' AND client_event <> '' AND countrycode <> ''
        AND strlen(CAST(to_json(event_id || device_id || client_event || countrycode) AS VARCHAR))
            = strlen(event_id || device_id || client_event || countrycode) + 2
        AND TRY_CAST(user_id AS INTEGER) >= 1 AND CAST(TRY_CAST(user_id AS INTEGER) AS VARCHAR) = user_id
        AND length(client_event) <= {{ CLIENT_EVENT_MAX_LEN }}
        AND strftime(parsed_ts, {{ DUCKDB_TS_FORMAT }}) = client_timestamp
        AND epoch_ms(parsed_ts) <= epoch_ms(now()) + {{ contract.max_future_skew_ms }})
{%- endmacro %}

{#- The first failing rule's reason, NULL for a valid event. Needs the columns of parsed_events plus parsed_ts
    (client_timestamp parsed once with the wire format). -#}
{% macro reject_reason() -%}
CASE WHEN {{ passes_every_rule() }} THEN NULL ELSE CASE
{% for rule in REJECT_RULES %}
    WHEN {{ check(rule) }} THEN {{ rule.reason | sql_str }}
{% endfor %}
END END
{%- endmacro %}

{#- The CTEs parsed_events, checked_events and unique_events over the source relation.
    source: a relation (table name, subquery or table function) with
      source_kind == 'raw':   record VARCHAR (one JSON event as received) and the arrival_order column;
      source_kind == 'typed': event_id, user_id, device_id, client_event, countrycode and client_timestamp as a
                              TIMESTAMP/TIMESTAMPTZ (e.g. the compacted Parquet), plus the arrival_order column;
      source_kind == 'proven': events a reader already proved to pass every reject rule (localdev.event_files):
                              event_id (VARCHAR, or UUID when every id is one as DuckDB writes it: the same
                              order), user_id (INTEGER), device_id, client_event, countrycode (VARCHAR, or an
                              ENUM of the words in their string order), event_ms (epoch ms), plus the
                              arrival_order column. No rule runs again and nothing is rejected;
                              no string holds a quote or a backslash either (their JSON text is the string in
                              quotes: include.sessions.batch writes the lines so).
    arrival_order: an expression; among copies of an event_id the smallest is kept (Flink keeps the first
    arrival). -#}
{% macro event_ctes(source, source_kind, arrival_order) -%}
{% if source_kind == 'proven' %}
checked_events AS (
    SELECT NULL::VARCHAR AS reason, NULL::VARCHAR AS record, NULL::BIGINT AS arrival_order WHERE FALSE
),
{#- The dedup groups 64-bit hashes of the ids and ranks only the copies of repeated ids (one_row_per_id). -#}
proven_events AS NOT MATERIALIZED (
    SELECT event_id, user_id, device_id, client_event, countrycode, event_ms,
        {{ arrival_order }} AS arrival_order, hash(event_id) AS id_key
    FROM {{ source }}
),
{{ s.one_row_per_id('unique_events', 'proven_events',
    'event_id, user_id, device_id, client_event, countrycode, event_ms', 'arrival_order') }}
{% else %}
{% if source_kind == 'raw' %}
{#- Each JSON function parses the record again, so a record is parsed three times (valid? root type? the six
    members as JSON text and as strings, each list in one call) rather than once per field and function. -#}
source_records AS (
    SELECT record, {{ arrival_order }} AS arrival_order,
        CASE WHEN json_valid(record) THEN json_type(record) END AS root_type,
        CASE WHEN json_valid(record) THEN json_extract(record, {{ member_paths() }}) END AS members,
        CASE WHEN json_valid(record) THEN json_extract_string(record, {{ member_paths() }}) END AS texts
    FROM {{ source }}
    -- blank records are skipped (trim only for records that start with a space: CASE keeps that order)
    WHERE CASE WHEN starts_with(record, ' ') THEN trim(record) <> '' ELSE record <> '' END
),
parsed_events AS (
    SELECT
        record, arrival_order,
        root_type = 'OBJECT' AS is_object,
{% for name in EVENT_MEMBERS %}
        {{ member(loop.index) }} AS {{ name }},
{% endfor %}
    FROM source_records
),
{% elif source_kind == 'typed' %}
parsed_events AS (
    SELECT
        to_json({'event_id': event_id, 'user_id': user_id, 'device_id': device_id, 'client_event': client_event,
            'client_timestamp': {{ iso('epoch_ms(client_timestamp)') }}, 'countrycode': countrycode})::VARCHAR AS record,
        {{ arrival_order }} AS arrival_order,
        TRUE AS is_object,
        event_id::VARCHAR AS event_id,
        user_id::VARCHAR AS user_id,
        device_id::VARCHAR AS device_id,
        client_event::VARCHAR AS client_event,
        {{ iso('epoch_ms(client_timestamp)') }} AS client_timestamp,
        countrycode::VARCHAR AS countrycode
    FROM {{ source }}
),
{% else %}
{{ fail('source_kind must be raw or typed, got ' ~ source_kind) }}
{% endif %}
checked_events AS (
    SELECT *, {{ reject_reason() | indent(8) }} AS reason
    FROM (SELECT *, try_strptime(client_timestamp, {{ DUCKDB_TS_FORMAT }}) AS parsed_ts FROM parsed_events) parsed
),
unique_events AS (
    SELECT
        event_id, CAST(user_id AS INTEGER) AS user_id, device_id, client_event, client_timestamp, countrycode,
        epoch_ms(parsed_ts) AS event_ms
    FROM checked_events
    WHERE reason IS NULL
    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY arrival_order) = 1
)
{% endif %}
{%- endmacro %}
