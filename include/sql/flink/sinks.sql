{#- The four sinks. Needs one WITH-options mapping per sink: sessions_sink, metrics_sink, late_sink, rejected_sink
    (filesystem on s3:// paths on AWS, on a local directory locally; see include/flink_app/flink_job.py). -#}
CREATE TABLE sessions_sink (
    session_id STRING,
    user_id INT,
    device_id STRING,
    session_start STRING,
    last_event_at STRING,
    session_end STRING,
    duration_ms BIGINT,
    event_count BIGINT,
    first_event STRING,
    last_event STRING,
    countrycode STRING,
    dt STRING,
    hr STRING
) PARTITIONED BY (dt, hr) WITH (
{{ sessions_sink | with_options }}
);

CREATE TABLE metrics_sink (
    window_start STRING,
    window_end STRING,
    countrycode STRING,
    device_id STRING,
    client_event STRING,
    events BIGINT,
    users BIGINT,
    dt STRING,
    hr STRING
) PARTITIONED BY (dt, hr) WITH (
{{ metrics_sink | with_options }}
);

CREATE TABLE late_events_sink (
    event_id STRING,
    user_id INT,
    device_id STRING,
    client_event STRING,
    client_timestamp STRING,
    countrycode STRING,
    watermark_at STRING,
    arrival_time STRING,
    dt STRING,
    hr STRING
) PARTITIONED BY (dt, hr) WITH (
{{ late_sink | with_options }}
);

CREATE TABLE rejected_events_sink (
    reason STRING,
    record STRING,
    arrival_time STRING,
    dt STRING,
    hr STRING
) PARTITIONED BY (dt, hr) WITH (
{{ rejected_sink | with_options }}
);
