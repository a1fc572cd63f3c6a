{#- The one computation of a batch session from unique events, shared by batch/sessions.sql (the CLI and the
    golden tests) and the hourly reconciliation (_reconcile_macros.sql). Plain SQL that DuckDB and Trino both
    read. -#}

{#- CTEs batch_sessions_gaps, batch_sessions_numbered and batch_sessions: the sessions of `events` (event_id,
    user_id, device_id, client_event, countrycode, event_ms; one row per event_id) with start_ms, last_ms,
    event_count, first_event, last_event and countrycode (of the first event).
    One sort finds both the gaps and the sessions: events in the contract's order within a key (event_ms,
    client_event, event_id: a total order, ids are unique here), so a session's first row is its first event
    and its last row its last event. Only the boundary rows (a session's first and last events) go on to the
    second, much smaller window, which pairs each first row with its last row.
    flag_first_ties=true sorts by (event_ms, client_event) only: sorting by the id costs a fifth of the first
    window, and the id decides nothing but the countrycode of a session whose first events tie on both (the
    first and last events' names and every count are the same either way). Such a session gets first_tied, and
    its countrycode must then be taken from the tied event with the smallest event_id
    (hour_sessions_ties.sql). #}
{% macro boundary_sessions(events, flag_first_ties=false) -%}
{% set by_key = 'PARTITION BY user_id, device_id ORDER BY event_ms, client_event'
    ~ ('' if flag_first_ties else ', event_id') %}
batch_sessions_gaps AS (
    SELECT user_id, device_id, client_event, countrycode, event_ms,
        -- the gap is inclusive; a key's first event starts a session and its last one ends one
        CASE WHEN event_ms - lag(event_ms) OVER ({{ by_key }}) <= {{ contract.gap_ms }} THEN FALSE ELSE TRUE END
            AS starts_session,
        CASE WHEN lead(event_ms) OVER ({{ by_key }}) - event_ms <= {{ contract.gap_ms }} THEN FALSE ELSE TRUE END
            AS ends_session,
{% if flag_first_ties %}
        -- the next row ties with this one on (event_ms, client_event): their order is not known
        coalesce(lead(event_ms) OVER ({{ by_key }}) = event_ms
            AND lead(client_event) OVER ({{ by_key }}) = client_event, FALSE) AS tied_with_next,
{% endif %}
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
        countrycode{{ ',\n        tied_with_next AS first_tied' if flag_first_ties }}
    FROM batch_sessions_numbered
    WHERE starts_session
)
{%- endmacro %}

{#- CTE repeated_ids: the values of column id_key that occur more than once in `rel` (a 64-bit hash collision
    only marks a few more rows as copies). DuckDB sorts the keys and compares neighbours (0.21 CPU-s for 3 M
    keys, a hash aggregate 0.30); Trino groups them (a sort without a partition would run on one node). -#}
{% macro repeated_ids(rel) -%}
repeated_ids AS (
{% if (dialect | default('duckdb')) == 'duckdb' %}
    SELECT DISTINCT id_key FROM (
        SELECT id_key, lag(id_key) OVER (ORDER BY id_key) AS previous_key
        FROM {{ rel }} keys
    ) sorted_keys
    WHERE id_key = previous_key
{% else %}
    SELECT id_key FROM {{ rel }} GROUP BY id_key HAVING count(*) > 1
{% endif %}
)
{%- endmacro %}

{#- The rows of `rel` (with id_key) whose id_key is in repeated_ids, each with copy_no: its rank among the copies
    of its event_id by `order` (1 is the copy kept). -#}
{% macro ranked_copies(rel, order) -%}
SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY {{ order }}) AS copy_no
FROM {{ rel }} v
WHERE EXISTS (SELECT 1 FROM repeated_ids r WHERE r.id_key = v.id_key)
{%- endmacro %}

{#- CTEs repeated_ids and `name`: one row per event_id of `rel`, the copy first by `order` kept. `rel` has the
    `columns` plus id_key (in DuckDB a 64-bit hash of event_id, cheaper to group than the string; elsewhere the
    id itself). Only the copies of repeated ids are ranked; every other row passes as it is, so no event is
    sorted by its id. `order` must end in a total order of the copies (or they are exact copies). -#}
{% macro one_row_per_id(name, rel, columns, order) -%}
{{ repeated_ids(rel) }},
{{ name }} AS (
    SELECT {{ columns }}
    FROM {{ rel }} v WHERE NOT EXISTS (SELECT 1 FROM repeated_ids r WHERE r.id_key = v.id_key)
    UNION ALL
    SELECT {{ columns }}
    FROM (
        {{ ranked_copies(rel, order) | indent(8) }}
    ) ranked
    WHERE copy_no = 1
)
{%- endmacro %}
