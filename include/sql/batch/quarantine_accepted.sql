{#- Records the batch path quarantined (compaction's schema checks are stricter than the session reject rules)
    that the stream's rules accept, as the stream would see them: the raw text through the same reject rules as
    batch/sessions.sql. The reconciliation adds them back to explain rule differences.
    Not deduplicated by event_id: such records often share a made-up id (`"event_id": 12345`) and the stream
    forgets an id after the dedup horizon, so each distinct (id, key, time) counts; identical copies count once.
    DuckDB only: an hour's quarantine is small. Needs: source (record, arrival_order), arrival_order. -#}
{% import 'batch/_macros.sql' as m with context %}
WITH {{ m.event_ctes(source, 'raw', arrival_order) }}
SELECT DISTINCT
    lower(event_id) AS event_id,
    CAST(user_id AS INTEGER) AS user_id,
    device_id,
    {{ m.epoch_ms('client_timestamp') }} AS event_ms
FROM checked_events
WHERE reason IS NULL
