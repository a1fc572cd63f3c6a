{#- One INSERT per sink, executed together in one StatementSet (one job). -#}
{% import 'flink/_macros.sql' as m with context %}
{#- An on-time event's rowtime formats to its client_timestamp, so the session's first and last epoch
    milliseconds are computed once per session from MIN/MAX(rowtime), not parsed from every event's string. #}
{% set start_ms = m.epoch_ms(m.iso('MIN(rowtime)')) %}
{% set last_ms = m.epoch_ms(m.iso('MAX(rowtime)')) %}
INSERT INTO sessions_sink
SELECT
    MD5(CAST(user_id AS STRING) || '|' || device_id || '|' || CAST({{ start_ms }} AS STRING)) AS session_id,
    user_id,
    device_id,
    {{ m.iso('MIN(rowtime)') }} AS session_start,
    {{ m.iso('MAX(rowtime)') }} AS last_event_at,
    {{ m.iso('window_end') }} AS session_end,
    {{ last_ms }} - {{ start_ms }} AS duration_ms,
    COUNT(DISTINCT event_id) AS event_count,
    SPLIT_INDEX(MIN(sort_key), {{ SEP }}, 1) AS first_event,
    SPLIT_INDEX(MAX(sort_key), {{ SEP }}, 1) AS last_event,
    SPLIT_INDEX(MIN(sort_key), {{ SEP }}, 3) AS countrycode,
    DATE_FORMAT(MIN(rowtime), 'yyyy-MM-dd') AS dt,
    DATE_FORMAT(MIN(rowtime), 'HH') AS hr
FROM TABLE(
    SESSION(TABLE on_time_events PARTITION BY ({{ contract.session_key | join(', ') }}), DESCRIPTOR(rowtime),
        {{ contract.gap_ms | flink_interval }}))
GROUP BY {{ contract.session_key | join(', ') }}, window_start, window_end;

INSERT INTO metrics_sink
SELECT
    {{ m.iso('window_start') }} AS window_start,
    {{ m.iso('window_end') }} AS window_end,
    countrycode,
    device_id,
    client_event,
    COUNT(DISTINCT event_id) AS events,
    COUNT(DISTINCT user_id) AS users,
    DATE_FORMAT(window_start, 'yyyy-MM-dd') AS dt,
    DATE_FORMAT(window_start, 'HH') AS hr
FROM TABLE(TUMBLE(TABLE on_time_events, DESCRIPTOR(rowtime), {{ contract.metrics_window_ms | flink_interval }}))
GROUP BY window_start, window_end, countrycode, device_id, client_event;

INSERT INTO late_events_sink
SELECT
    event_id, user_id, device_id, client_event, client_timestamp, countrycode,
    {{ m.iso('watermark_at') }} AS watermark_at,
    {{ m.iso('arrival_time') }} AS arrival_time,
    DATE_FORMAT(arrival_time, 'yyyy-MM-dd') AS dt,
    DATE_FORMAT(arrival_time, 'HH') AS hr
FROM late_events;

INSERT INTO rejected_events_sink
SELECT
    reason,
    record,
    {{ m.iso('arrival_time') }} AS arrival_time,
    DATE_FORMAT(arrival_time, 'yyyy-MM-dd') AS dt,
    DATE_FORMAT(arrival_time, 'HH') AS hr
FROM rejected_events;
