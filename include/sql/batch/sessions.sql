{#- Batch sessions: the same definition as the Flink SESSION window (gap inclusive, dedup first, first/last by
    (client_timestamp, client_event, event_id)), over all valid events at once: no watermark, nothing is late.
    The sessions themselves are computed by the same macro as the hourly reconciliation's (_session_macros.sql).
    Needs: source, source_kind ('raw' | 'typed' | 'proven'), arrival_order (see _macros.sql); optional: ordered. -#}
{% import 'batch/_macros.sql' as m with context %}
{% import 'batch/_session_macros.sql' as s with context %}
{% set ordered = ordered | default(true) %}
WITH {{ m.event_ctes(source, source_kind, arrival_order) }},
{{ s.boundary_sessions('unique_events') }}
SELECT
    md5(CAST(user_id AS VARCHAR) || '|' || device_id || '|' || CAST(start_ms AS VARCHAR)) AS session_id,
    user_id,
    CAST(device_id AS VARCHAR) AS device_id,
    {{ m.iso('start_ms') }} AS session_start,
    {{ m.iso('last_ms') }} AS last_event_at,
    -- a session ends one gap after its last event (the gap is inclusive: an event at exactly session_end joins it)
    {{ m.iso('last_ms + ' ~ contract.gap_ms) }} AS session_end,
    last_ms - start_ms AS duration_ms,
    event_count,
    CAST(first_event AS VARCHAR) AS first_event,
    CAST(last_event AS VARCHAR) AS last_event,
    CAST(countrycode AS VARCHAR) AS countrycode{{ ',' if not ordered }}
{% if not ordered %}
    -- the caller sorts (the lines of include.sessions.batch.write_sessions_jsonl), so only once, by narrow keys
    -- in the same order: device_id as read (an ENUM of its words in string order, or the text), start_ms
    device_id AS device_key,
    start_ms AS start_key
{% endif %}
FROM batch_sessions
{% if ordered %}
ORDER BY user_id, device_id, session_start
{% endif %}
