{#- DuckDB: the countrycode of each window session whose first events tie on (event_ms, client_event)
    (first_tied, see boundary_sessions in _session_macros.sql) becomes that of the tied event with the smallest
    event_id: the contract's first event. Needs: events (hour_events), window (window_sessions). -#}
UPDATE {{ window }} AS w
SET countrycode = t.countrycode
FROM (
    SELECT e.user_id, e.device_id, e.event_ms, arg_min(e.countrycode, e.event_id) AS countrycode
    FROM {{ events }} e
    JOIN (SELECT user_id, device_id, start_ms, first_event FROM {{ window }} WHERE first_tied) s
        ON e.user_id = s.user_id AND e.device_id = s.device_id AND e.event_ms = s.start_ms
        AND e.client_event = s.first_event
    GROUP BY e.user_id, e.device_id, e.event_ms
) t
WHERE w.first_tied AND w.user_id = t.user_id AND w.device_id = t.device_id AND w.start_ms = t.event_ms
