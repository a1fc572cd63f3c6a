{#- Records the batch path quarantined (compaction's schema checks are stricter than the session reject rules)
    that the stream's rules accept, as the stream would see them: the raw text through the same reject rules and
    first-arrival dedup as batch/sessions.sql. The reconciliation adds them back to explain rule differences.
    DuckDB only: an hour's quarantine is small. Needs: source (record, arrival_order), arrival_order. -#}
{% import 'batch/_macros.sql' as m with context %}
WITH {{ m.event_ctes(source, 'raw', arrival_order) }}
SELECT lower(event_id) AS event_id, user_id, device_id, event_ms
FROM unique_events
