{#- Events that fail a reject rule, with the first failing rule's reason (same texts as the Flink job).
    Needs: source, source_kind, arrival_order. -#}
{% import 'batch/_macros.sql' as m with context %}
WITH {{ m.event_ctes(source, source_kind, arrival_order) }}
SELECT reason, record, strftime(now() AT TIME ZONE 'UTC', {{ DUCKDB_TS_FORMAT }}) AS arrival_time
FROM checked_events
WHERE reason IS NOT NULL
ORDER BY arrival_order
