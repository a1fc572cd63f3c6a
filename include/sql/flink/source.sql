{#- The events source: one raw JSON record per row ('format' = 'raw'), so a record that is not JSON at all is
    still seen (and rejected with its text) instead of vanishing inside a JSON format's ignore-parse-errors.
    Needs: source_options (the WITH clause: kinesis on AWS, filesystem locally). -#}
{% import 'flink/_macros.sql' as m with context %}
CREATE TABLE events_raw (
    record STRING,
    {# Each field is extracted once here: the watermark assigner between these computed columns and the views
        keeps the planner from inlining JSON_VALUE into every check that reads the field. #}
{% for name in ('event_id', 'user_id', 'device_id', 'client_event', 'client_timestamp', 'countrycode') %}
    {{ name }} AS {{ m.field(name) }},
{% endfor %}
    arrival_time AS PROCTIME(),
    rowtime AS {{ m.rowtime(m.field('client_timestamp')) | indent(4) }},
    {# The watermark reads the extracted client_timestamp (no second parse of the record): see watermark_time. #}
    WATERMARK FOR rowtime AS {{ m.watermark_time('rowtime', 'client_timestamp') }}
        - {{ contract.watermark_delay_ms | flink_interval }}
) WITH (
{{ source_options | with_options }}
);
