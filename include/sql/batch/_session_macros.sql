{#- The one computation of a batch session from unique events, shared by batch/sessions.sql (the CLI and the
    golden tests) and the hourly reconciliation (_reconcile_macros.sql). Plain SQL that DuckDB and Trino both
    read. -#}

{#- CTEs batch_sessions_gaps, batch_sessions_numbered and batch_sessions: the sessions of `events` (event_id,
    user_id, device_id, client_event, countrycode, event_ms; one row per event_id) with start_ms, last_ms,
    event_count, first_event, last_event and countrycode (of the first event).
    One sort finds both the gaps and the sessions: events in the contract's order within a key (event_ms,
    client_event, event_id: a total order, ids are unique here), so a session's first row is its first event
    and its last row its last event. Only the boundary rows (a session's first and last events) go on to the
    second, much smaller window, which pairs each first row with its last row. #}
{% macro boundary_sessions(events) -%}
{% set by_key = 'PARTITION BY user_id, device_id ORDER BY event_ms, client_event, event_id' %}
batch_sessions_gaps AS (
    SELECT event_id, user_id, device_id, client_event, countrycode, event_ms,
        -- the gap is inclusive; a key's first event starts a session and its last one ends one
        CASE WHEN event_ms - lag(event_ms) OVER ({{ by_key }}) <= {{ contract.gap_ms }} THEN FALSE ELSE TRUE END
            AS starts_session,
        CASE WHEN lead(event_ms) OVER ({{ by_key }}) - event_ms <= {{ contract.gap_ms }} THEN FALSE ELSE TRUE END
            AS ends_session,
        row_number() OVER ({{ by_key }}) AS event_no
    FROM {{ events }}
),
{# event_no is the position in the contract's order, so ordering the boundary rows by it is the same order and
    much cheaper to sort than the three keys. #}
batch_sessions_numbered AS (
    SELECT *,
        lead(event_ms) OVER (PARTITION BY user_id, device_id ORDER BY event_no) AS next_ms,
        lead(client_event) OVER (PARTITION BY user_id, device_id ORDER BY event_no) AS next_event,
        lead(event_no) OVER (PARTITION BY user_id, device_id ORDER BY event_no) AS next_no
    FROM batch_sessions_gaps
    WHERE starts_session OR ends_session
),
batch_sessions AS (
    SELECT user_id, device_id,
        event_ms AS start_ms,
        CASE WHEN ends_session THEN event_ms ELSE next_ms END AS last_ms,
        CASE WHEN ends_session THEN 1 ELSE next_no - event_no + 1 END AS event_count,
        client_event AS first_event,
        CASE WHEN ends_session THEN client_event ELSE next_event END AS last_event,
        countrycode
    FROM batch_sessions_numbered
    WHERE starts_session
)
{%- endmacro %}
