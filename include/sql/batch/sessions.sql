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
    WINDOW by_key AS (PARTITION BY {{ contract.session_key | join(', ') }} ORDER BY sort_key)
),
numbered AS (
    SELECT *,
        sum(starts_session) OVER (
            PARTITION BY {{ contract.session_key | join(', ') }} ORDER BY sort_key ROWS UNBOUNDED PRECEDING
        ) AS session_no
    FROM gaps
)
SELECT
    md5(CAST(user_id AS VARCHAR) || '|' || device_id || '|' || CAST(min(event_ms) AS VARCHAR)) AS session_id,
    user_id,
    device_id,
    {{ m.iso('min(event_ms)') }} AS session_start,
    {{ m.iso('max(event_ms)') }} AS last_event_at,
    {{ m.iso('max(event_ms) + ' ~ contract.gap_ms) }} AS session_end,
    max(event_ms) - min(event_ms) AS duration_ms,
    count(DISTINCT event_id) AS event_count,
    split_part(min(sort_key), chr(1), 2) AS first_event,
    split_part(max(sort_key), chr(1), 2) AS last_event,
    split_part(min(sort_key), chr(1), 4) AS countrycode
FROM numbered
GROUP BY {{ contract.session_key | join(', ') }}, session_no
ORDER BY user_id, device_id, session_start
