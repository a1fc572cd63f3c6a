{#- DuckDB: delete from the table `events` (hour_events.sql with copies_removed_later) every copy of an event_id
    but the one first by COPY_ORDER: the same rows one_row_per_id keeps. Repeated ids are found by their 64-bit
    hash (repeated_ids); only their copies are ranked. -#}
{% import 'batch/_reconcile_macros.sql' as r with context %}
{% import 'batch/_session_macros.sql' as s with context %}
{% set keyed = '(SELECT *, rowid AS row_key, hash(event_id) AS id_key FROM ' ~ events ~ ')' %}
DELETE FROM {{ events }} WHERE rowid IN (
    WITH {{ s.repeated_ids(keyed) }}
    SELECT row_key FROM (
        {{ s.ranked_copies(keyed, r.COPY_ORDER) | indent(8) }}
    ) ranked
    WHERE copy_no > 1
)
