{#- The events source. Its format, 'clickstream-event' (include/flink_app/java, built into a jar by
    include/flink_app/format_jar.py), parses each record ONCE and fills the physical columns by name: `record` is
    the raw text (so a record that is not JSON at all is still seen, and rejected with its text, instead of
    vanishing inside a JSON format's ignore-parse-errors), `one_json_object` says whether the record is one JSON
    object and nothing else, and each other column is the member of that name exactly as JSON_VALUE(record,
    '$.name') returns it (NULL when missing, JSON null, an object/array or bad JSON), and `client_timestamp_ms` is
    the instant of a client_timestamp in the wire format's plainest form (NULL otherwise; see the rowtime macro).
    Needs: source_options (the WITH clause: kinesis on AWS, filesystem locally). -#}
{% import 'flink/_macros.sql' as m with context %}
CREATE TABLE events_raw (
    record STRING,
    {{ JSON_OBJECT_COLUMN }} BOOLEAN,
{% for name in EVENT_FIELDS %}
    {{ name }} STRING,
{% endfor %}
    {{ WIRE_TIME_MS_COLUMN }} BIGINT,
    arrival_time AS PROCTIME(),
    rowtime AS {{ m.rowtime('client_timestamp') | indent(4) }},
    {# The watermark reads the extracted client_timestamp: see watermark_time. #}
    WATERMARK FOR rowtime AS {{ m.watermark_time('rowtime', 'client_timestamp') }}
        - {{ contract.watermark_delay_ms | flink_interval }}
) WITH (
{{ source_options | with_options }}
);
