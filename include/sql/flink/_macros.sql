{#- Flink SQL macros shared by the templates in this folder. Every expression is plain SQL (no Python UDF),
    so nothing in the hot path leaves the JVM. The session time zone is the contract's (UTC). -#}

{#- TRUE when the string is exactly the wire format AND names a real instant: formatting the parsed value must
    give the string back, which rejects every other shape and 2026-02-30 (the parser alone would shift it to
    2026-03-01). Never NULL. -#}
{% macro valid_ts(expr) -%}
COALESCE(DATE_FORMAT(TO_TIMESTAMP_LTZ({{ expr }}, {{ FLINK_TS_FORMAT }}, 'UTC'), {{ FLINK_TS_FORMAT }}) = {{ expr }}, FALSE)
{%- endmacro %}

{#- The event time, from the extracted timestamp (Calcite expands NULLIF/CASE into copies of their operands, so
    the timestamp is parsed once here): the parsed
    instant, clamped to max_future_skew ahead of the processing time (CURRENT_TIMESTAMP is evaluated once per
    record); the epoch when it does not parse (a NULL rowtime would fail the job). The rowtime equals the
    timestamp exactly when the timestamp is valid and not too far ahead (see `is_wire_time`): only those events
    move the watermark (`watermark_time`) and the reject rules refuse the others, so a clamped or leniently
    parsed (2026-02-30) rowtime never reaches a window. The instant comes from the format's WIRE_TIME_MS_COLUMN
    when it read the text itself (a plain wire timestamp: the same instant this parse gives); only other texts
    are parsed here. CASE, not COALESCE: Flink evaluates every COALESCE argument, CASE only the branch taken. -#}
{% macro rowtime(expr) -%}
COALESCE(
    LEAST(CASE WHEN {{ WIRE_TIME_MS_COLUMN }} IS NOT NULL THEN TO_TIMESTAMP_LTZ({{ WIRE_TIME_MS_COLUMN }}, 3)
        ELSE TO_TIMESTAMP_LTZ({{ expr }}, {{ FLINK_TS_FORMAT }}, 'UTC') END,
        CURRENT_TIMESTAMP + {{ contract.max_future_skew_ms | flink_interval }}),
    TO_TIMESTAMP_LTZ(0, 3))
{%- endmacro %}

{#- TRUE when the rowtime is exactly the event's timestamp string: the timestamp is valid (formatting gives the
    string back) and was not clamped as too far ahead (the format has milliseconds, so a clamped instant formats
    differently). NULL when the timestamp is NULL. A plain wire timestamp (WIRE_TIME_MS_COLUMN set) is valid and
    formats back to itself, so for it the test is the rowtime being that instant, without formatting it. -#}
{% macro is_wire_time(rowtime, expr) -%}
CASE WHEN {{ WIRE_TIME_MS_COLUMN }} IS NOT NULL THEN {{ rowtime }} = TO_TIMESTAMP_LTZ({{ WIRE_TIME_MS_COLUMN }}, 3)
    ELSE DATE_FORMAT({{ rowtime }}, {{ FLINK_TS_FORMAT }}) = {{ expr }} END
{%- endmacro %}

{#- What the watermark follows: the rowtime of an event whose timestamp is valid and not too far ahead, else the
    epoch (as if the rowtime had been computed with every check), from columns the source already extracted. -#}
{% macro watermark_time(rowtime, expr) -%}
CASE WHEN {{ is_wire_time(rowtime, expr) }} THEN {{ rowtime }} ELSE TO_TIMESTAMP_LTZ(0, 3) END
{%- endmacro %}

{#- Epoch milliseconds of a valid wire timestamp (whole seconds parsed with an explicit Z, plus the millis). -#}
{% macro epoch_ms(expr) -%}
(UNIX_TIMESTAMP(SUBSTRING({{ expr }} FROM 1 FOR 19) || 'Z', 'yyyy-MM-dd''T''HH:mm:ssX') * 1000
    + CAST(SUBSTRING({{ expr }} FROM 21 FOR 3) AS BIGINT))
{%- endmacro %}

{% macro check(rule) -%}
{% set f = rule.field %}
{% if rule.check == 'not_json_object' -%}
NOT COALESCE({{ JSON_OBJECT_COLUMN }}, FALSE)
{%- elif rule.check == 'null' -%}
{{ f }} IS NULL
{%- elif rule.check == 'bad_string' -%}
({{ f }} = '' OR REGEXP({{ f }}, '[\x00-\x1f]'))
{%- elif rule.check == 'positive_int' -%}
NOT COALESCE(REGEXP({{ f }}, '^[0-9]{1,10}$') AND TRY_CAST({{ f }} AS BIGINT) BETWEEN 1 AND 2147483647, FALSE)
{%- elif rule.check == 'too_long' -%}
CHAR_LENGTH({{ f }}) > {{ CLIENT_EVENT_MAX_LEN }}
{%- elif rule.check == 'bad_timestamp' -%}
{#- A rowtime that formats to the string proves it valid, so only the rare other events parse it again. -#}
NOT ({{ is_wire_time('rowtime', f) }} OR {{ valid_ts(f) }})
{%- elif rule.check == 'future' -%}
NOT {{ is_wire_time('rowtime', f) }}
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
