{#- Batch sessions: the same definition as the Flink SESSION window (gap inclusive, dedup first, first/last by
    (client_timestamp, client_event, event_id)), over all valid events at once: no watermark, nothing is late.
    Needs: source, source_kind ('raw' | 'typed'), arrival_order (see _macros.sql). -#}
{% import 'batch/_macros.sql' as m with context %}
WITH {{ m.event_ctes(source, source_kind, arrival_order) }},
gaps AS (
    SELECT *,
        -- a session starts at a key's first event and after every gap longer than the contract's gap
        CASE WHEN event_ms - lag(event_ms) OVER by_key <= {{ contract.gap_ms }} THEN 0 ELSE 1 END AS starts_session
    FROM unique_events
    WINDOW by_key AS (PARTITION BY {{ contract.session_key | join(', ') }} ORDER BY event_ms)
),
{#- Events at the same time are in one session whatever their order; RANGE gives such peers the same number.
    Ordering by event_ms alone (not the whole first/last key) is enough to number the sessions. #}
numbered AS (
    SELECT *,
        sum(starts_session) OVER (
            PARTITION BY {{ contract.session_key | join(', ') }} ORDER BY event_ms
            RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS session_no
    FROM gaps
)
{#- first/last event: the smallest/largest (client_timestamp, client_event, event_id); event_ids are unique here
    (unique_events), so count(*) counts distinct events. #}
{% set order_key = 'ROW(event_ms, client_event, event_id)' %}
SELECT
    md5(CAST(user_id AS VARCHAR) || '|' || device_id || '|' || CAST(min(event_ms) AS VARCHAR)) AS session_id,
    user_id,
    device_id,
    {{ m.iso('min(event_ms)') }} AS session_start,
    {{ m.iso('max(event_ms)') }} AS last_event_at,
    {{ m.iso('max(event_ms) + ' ~ contract.gap_ms) }} AS session_end,
    max(event_ms) - min(event_ms) AS duration_ms,
    count(*) AS event_count,
    min_by(client_event, {{ order_key }}) AS first_event,
    max_by(client_event, {{ order_key }}) AS last_event,
    min_by(countrycode, {{ order_key }}) AS countrycode
FROM numbered
GROUP BY {{ contract.session_key | join(', ') }}, session_no
ORDER BY user_id, device_id, session_start
