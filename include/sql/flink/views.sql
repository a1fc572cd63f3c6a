{#- Validation, dedup and the late/on-time split, shared by every INSERT of the job (the planner reuses the
    common sub-plan). Order matters: duplicates are dropped before lateness is decided, so a late copy of an
    event that already counted is not reported as a late event. -#}
{% import 'flink/_macros.sql' as m with context %}
CREATE TEMPORARY VIEW checked_events AS
SELECT
    record, event_id, user_id, device_id, client_event, client_timestamp, countrycode, rowtime, arrival_time,
    {{ m.reject_reason() | indent(4) }} AS reason
FROM events_raw
WHERE TRIM(record) <> '';

CREATE TEMPORARY VIEW rejected_events AS
SELECT reason, record, arrival_time
FROM checked_events
WHERE reason IS NOT NULL;

{#- Keep the first copy of each event_id by arrival; state TTL (table.exec.state.ttl) = the dedup horizon. -#}
CREATE TEMPORARY VIEW unique_events AS
SELECT event_id, user_id, device_id, client_event, client_timestamp, countrycode, rowtime, arrival_time
FROM (
    SELECT
        event_id, CAST(user_id AS INT) AS user_id, device_id, client_event, client_timestamp, countrycode,
        rowtime, arrival_time,
        ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY arrival_time) AS arrival_rank
    FROM checked_events
    WHERE reason IS NULL
)
WHERE arrival_rank = 1;

{#- Late: not at least LATE_MARGIN_MS ahead of the watermark (see contract.LATE_MARGIN_MS for why). -#}
CREATE TEMPORARY VIEW late_events AS
SELECT
    event_id, user_id, device_id, client_event, client_timestamp, countrycode,
    CURRENT_WATERMARK(rowtime) AS watermark_at,
    arrival_time
FROM unique_events
WHERE rowtime < CURRENT_WATERMARK(rowtime) + {{ contract.late_margin_ms | flink_interval }};

CREATE TEMPORARY VIEW on_time_events AS
SELECT
    event_id, user_id, device_id, client_event, countrycode, rowtime,
    {# Ordering key of "first"/"last" event: (client_timestamp, client_event, event_id), countrycode rides along. #}
    client_timestamp || {{ SEP }} || client_event || {{ SEP }} || event_id || {{ SEP }} || countrycode AS sort_key
FROM unique_events
WHERE CURRENT_WATERMARK(rowtime) IS NULL
    OR rowtime >= CURRENT_WATERMARK(rowtime) + {{ contract.late_margin_ms | flink_interval }};
