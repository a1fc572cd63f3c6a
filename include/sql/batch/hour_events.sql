{#- The valid, unique events that hour H's batch sessions are built from: event times in
    [H - gap, H + 1 h + L] of a typed source (the compacted Parquet). Needs: dialect, source, read_start_ms,
    horizon_ms, now_ms (see _reconcile_macros.sql).
    copies_removed_later=true: every valid event, copies of an event_id included, for a DuckDB table from which
    hour_events_copies.sql then deletes the copies not kept (cheaper than keeping the valid events once more in
    the query to group their ids: the table is that copy). -#}
{% import 'batch/_reconcile_macros.sql' as r with context %}
{% if copies_removed_later %}
WITH {{ r.valid_event_ctes(source, with_id_key=false) }}
SELECT event_id, user_id, device_id, client_event, countrycode, event_ms
FROM valid_events
{% else %}
WITH {{ r.event_ctes(source) }}
SELECT event_id, user_id, device_id, client_event, countrycode, event_ms
FROM hour_events
{% endif %}
