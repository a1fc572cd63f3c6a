{#- Flink SQL macros shared by the templates in this folder. Every expression is plain SQL (no Python UDF),
    so nothing in the hot path leaves the JVM. The session time zone is the contract's (UTC). -#}

{#- One field of the raw JSON record, as a string; NULL when missing, JSON null, an object/array or bad JSON. -#}
{% macro field(name) -%}
JSON_VALUE(record, '$.{{ name }}')
{%- endmacro %}

{#- TRUE when the string is exactly the wire format AND names a real instant: formatting the parsed value must
    give the string back, which rejects every other shape and 2026-02-30 (the parser alone would shift it to
    2026-03-01). Never NULL. -#}
{% macro valid_ts(expr) -%}
COALESCE(DATE_FORMAT(TO_TIMESTAMP_LTZ({{ expr }}, {{ FLINK_TS_FORMAT }}, 'UTC'), {{ FLINK_TS_FORMAT }}) = {{ expr }}, FALSE)
{%- endmacro %}

{#- The event time. Invalid and far-future timestamps map to the epoch, so they never advance the watermark (a
    NULL rowtime would fail the job; a timestamp the lenient parser shifts, like 2026-02-30, must not move it
    either); such events are rejected by the reject rules below. -#}
{% macro rowtime(expr) -%}
CASE
    WHEN {{ valid_ts(expr) }}
        AND TO_TIMESTAMP_LTZ({{ expr }}, {{ FLINK_TS_FORMAT }}, 'UTC')
            <= CURRENT_TIMESTAMP + {{ contract.max_future_skew_ms | flink_interval }}
    THEN TO_TIMESTAMP_LTZ({{ expr }}, {{ FLINK_TS_FORMAT }}, 'UTC')
    ELSE TO_TIMESTAMP_LTZ(0, 3)
END
{%- endmacro %}

{#- Epoch milliseconds of a valid wire timestamp (whole seconds parsed with an explicit Z, plus the millis). -#}
{% macro epoch_ms(expr) -%}
(UNIX_TIMESTAMP(SUBSTRING({{ expr }} FROM 1 FOR 19) || 'Z', 'yyyy-MM-dd''T''HH:mm:ssX') * 1000
    + CAST(SUBSTRING({{ expr }} FROM 21 FOR 3) AS BIGINT))
{%- endmacro %}

{#- TRUE when nothing but whitespace follows the record's first JSON value. Flink's JSON functions (Jackson)
    ignore trailing content, so '{...}}' or '{...}{...}' would pass IS JSON OBJECT while every other reader of
    the lake (Python, DuckDB, jq in Firehose) rejects them. Appending an end marker as a second array element
    makes trailing content visible: a stray bracket breaks the array, a second value takes the marker's place.
    Only a record that itself contains ,"<marker>"] after its object could still pass. -#}
{% set END_MARKER = 'clickstream:end-of-record' %}
{% macro nothing_after_value(expr) -%}
(JSON_VALUE('[' || {{ expr }} || ',"{{ END_MARKER }}"]', '$[1]') = '{{ END_MARKER }}'
    AND NOT JSON_EXISTS('[' || {{ expr }} || ',"{{ END_MARKER }}"]', '$[2]'))
{%- endmacro %}

{% macro check(rule) -%}
{% set f = rule.field %}
{% if rule.check == 'not_json_object' -%}
NOT COALESCE({{ f }} IS JSON OBJECT AND {{ nothing_after_value(f) }}, FALSE)
{%- elif rule.check == 'null' -%}
{{ f }} IS NULL
{%- elif rule.check == 'bad_string' -%}
({{ f }} = '' OR REGEXP({{ f }}, '[\x00-\x1f]'))
{%- elif rule.check == 'positive_int' -%}
NOT COALESCE(REGEXP({{ f }}, '^[0-9]{1,10}$') AND TRY_CAST({{ f }} AS BIGINT) BETWEEN 1 AND 2147483647, FALSE)
{%- elif rule.check == 'too_long' -%}
CHAR_LENGTH({{ f }}) > {{ CLIENT_EVENT_MAX_LEN }}
{%- elif rule.check == 'bad_timestamp' -%}
NOT {{ valid_ts(f) }}
{%- elif rule.check == 'future' -%}
(rowtime = TO_TIMESTAMP_LTZ(0, 3) AND {{ f }} <> '1970-01-01T00:00:00.000Z')
{%- else -%}
{{ fail('no Flink rendering for reject check ' ~ rule.check) }}
{%- endif %}
{%- endmacro %}

{#- The first failing reject rule's reason, or NULL for a valid event. Columns are the raw strings. -#}
{% macro reject_reason() -%}
CASE
{% for rule in REJECT_RULES %}
    WHEN {{ check(rule) }} THEN {{ rule.reason | sql_str }}
{% endfor %}
END
{%- endmacro %}

{#- ISO-8601 UTC with milliseconds and Z, like the wire format. -#}
{% macro iso(expr) -%}
DATE_FORMAT({{ expr }}, {{ FLINK_TS_FORMAT }})
{%- endmacro %}
