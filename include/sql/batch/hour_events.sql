{#- The valid, unique events that hour H's batch sessions are built from: event times in
    [H - gap, H + 1 h + L] of a typed source (the compacted Parquet). Needs: dialect, source, read_start_ms,
    horizon_ms, now_ms (see _reconcile_macros.sql). -#}
{% import 'batch/_reconcile_macros.sql' as r with context %}
WITH {{ r.event_ctes(source) }}
SELECT event_id, user_id, device_id, client_event, countrycode, event_ms
FROM hour_events
