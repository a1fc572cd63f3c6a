{#-
  Athena (Trino) CTAS variant of hourly compaction, for hours too large for one worker.
  Render with include.compaction.ctas.render_compaction_ctas(); every value is validated there.

  It reads one hour of the raw Glue table (OpenX JSON SerDe, all columns strings), keeps the records that pass
  the same checks as include/compaction/validation.py where SQL can tell, types them, keeps the first record
  per event_id (earliest client_timestamp, then S3 object key, then the remaining columns so the choice is
  deterministic) and writes Parquet into `external_location` (a staging prefix; publish it to
  compacted/events/event_date=../event_hour=../ and register the partition with catalog.ensure_partition).

  Limitations compared with the Python compactor:
  * No quarantine file and only coarse reasons: rejected records are simply not selected. Invalid JSON lines
    are skipped by the SerDe (ignore.malformed.json), duplicate keys resolve to one value, and a JSON string
    "42" is indistinguishable from the number 42 (wrong_type is not detected for user_id), a JSON number is
    accepted as a string, and unexpected fields are ignored. Count the difference with the raw table if needed.
  * Records under Firehose's error prefix are not read (they are not in the raw table).
  * Ties on client_timestamp are broken by object key, not by line number ("$path" has no line).
  * Athena writes several files in parallel: rows are sorted by (user_id, device_id, client_timestamp,
    event_id) only within each file, and the timestamp column may be stored as INT96 rather than
    TIMESTAMP(MILLIS) depending on the engine version. Readers see the same values through the Glue table.
  * No manifest or content checksum: run the manifest step separately if the hour is to be reconciled.
-#}
CREATE TABLE "{{ database }}"."{{ ctas_table }}"
WITH (
    format = 'PARQUET',
    write_compression = 'ZSTD',
    external_location = '{{ external_location }}'
) AS
WITH typed AS (
    SELECT
        lower(event_id) AS event_id,
        user_id AS user_id_text,
        TRY_CAST(user_id AS integer) AS user_id,
        device_id,
        client_event,
        client_timestamp AS client_timestamp_text,
        TRY(CAST(date_parse(client_timestamp, '%Y-%m-%dT%H:%i:%s.%fZ') AS timestamp(3))) AS client_timestamp,
        countrycode,
        "$path" AS source_key
    FROM "{{ database }}"."{{ raw_table }}"
    WHERE event_date = '{{ event_date }}'
      AND event_hour = '{{ event_hour }}'
),
valid AS (
    SELECT *
    FROM typed
    WHERE regexp_like(event_id, '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
      AND regexp_like(user_id_text, '^[0-9]+$')
      AND user_id BETWEEN {{ user_id_min }} AND {{ user_id_max }}
      AND device_id IN ({{ device_ids }})
      AND length(trim(client_event)) > 0
      AND length(client_event) <= {{ client_event_max_len }}
      AND regexp_like(client_timestamp_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$')
      AND client_timestamp >= TIMESTAMP '{{ hour_start }}'
      AND client_timestamp < TIMESTAMP '{{ hour_end }}'
      AND client_timestamp <= TIMESTAMP '{{ future_limit }}'
      AND countrycode IN ({{ country_codes }})
),
ranked AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY event_id
            ORDER BY client_timestamp, source_key, user_id, device_id, client_event, countrycode
        ) AS rn
    FROM valid
)
SELECT
    event_id,
    user_id,
    device_id,
    client_event,
    client_timestamp,
    countrycode
FROM ranked
WHERE rn = 1
ORDER BY user_id, device_id, client_timestamp, event_id
