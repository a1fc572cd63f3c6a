{#- Per-window metrics (tumbling windows aligned to the epoch, like Flink's TUMBLE): events and distinct users by
    (countrycode, device_id, client_event). Needs: source, source_kind, arrival_order. -#}
{% import 'batch/_macros.sql' as m with context %}
{% set w = contract.metrics_window_ms %}
WITH {{ m.event_ctes(source, source_kind, arrival_order) }},
windowed AS (
    SELECT *, event_ms - (((event_ms % {{ w }}) + {{ w }}) % {{ w }}) AS window_start_ms
    FROM unique_events
)
SELECT
    {{ m.iso('window_start_ms') }} AS window_start,
    {{ m.iso('window_start_ms + ' ~ w) }} AS window_end,
    countrycode,
    device_id,
    client_event,
    count(*) AS events,  -- unique_events has one row per event_id
    count(DISTINCT user_id) AS users
FROM windowed
GROUP BY window_start_ms, countrycode, device_id, client_event
ORDER BY window_start, countrycode, device_id, client_event
