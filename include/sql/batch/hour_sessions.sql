{#- Batch sessions of hour H: the same definition as batch/sessions.sql and the Flink SESSION window (gap
    inclusive, first/last by (client_timestamp, client_event, event_id), md5 session id), over the events of
    [H - gap, H + 1 h + L]. Reading from H - gap finds every session that starts in H (an earlier event of the
    same session would be within the gap); reading to the settle horizon H + 1 h + L finishes every session whose
    last_event_at + gap <= horizon (`settled`); the others are `deferred`.

    Needs: dialect ('duckdb' | 'athena'), hour_start_ms, hour_end_ms, read_start_ms, horizon_ms, now_ms, and
    either `events` (a relation shaped like hour_events.sql's output) or `source` (the typed events).
    window=true: every session of the read window with start_ms, last_ms, in_hour, settled and, when DuckDB
    keeps it as a table (whose rowid serves for joins), first_tied (hour_sessions_ties.sql), else bid (what the
    reconciliation matches against; unordered: every reader joins or sorts it); otherwise the hour's sessions
    with exactly the stream's columns.
    dialect 'athena' with ctas=true wraps it in a CREATE TABLE AS (database, ctas_table, external_location). -#}
{% import 'batch/_reconcile_macros.sql' as r with context %}
{% if dialect == 'athena' and ctas %}
{{ r.athena_ctas_header() }}
{% endif %}
WITH
{% if events %}
{{ r.session_ctes(events) }}
{% else %}
{{ r.event_ctes(source) }},
{{ r.session_ctes('hour_events') }}
{% endif %}
SELECT
{% for name in SESSION_FIELDS %}
    {{ name }}{{ ',' if window or not loop.last }}
{% endfor %}
{% if window %}
    start_ms, last_ms, in_hour, settled, {{ 'first_tied' if r.window_is_table() else 'bid' }}
{% endif %}
FROM window_sessions
{% if not window %}
WHERE in_hour
ORDER BY user_id, device_id, session_start
{% endif %}
