{#- Stream<->batch reconciliation of hour H: one row per batch session that starts in H, plus one per stream
    session that starts in H and overlaps no batch session; each gets exactly one cause (issue 10, section 2):

      deferred           the batch session is not settled (last_event_at + gap > H + 1 h + L): not compared
      matched            a stream session with the same session_start, last_event_at and event_count
      late               the late ledger holds an event of the session, and sessionizing its events without
                         the ledger's gives exactly the stream sessions that overlap it; an event whose copy
                         the producer resent past the dedup horizon is in the ledger though the stream counted
                         the original on time, so an id the stream may have counted (more raw copies
                         than ledger rows) is tried both ways (late_ledger_ctes)
      duplicate          a stream session with the same span counts more events, no more than the extra
                         copies of the session's event_ids in the raw data
      rule_difference    the stream sessions follow once the records one side rejected and the other accepted
                         are moved (stream-rejected ids out, quarantined records the stream accepts in);
                         a stream-only session whose events are all such quarantined records is one too
      missing_in_stream  no stream session overlaps it
      missing_in_batch   (stream rows) no batch session overlaps a stream session of H
      mismatch           anything else

    Matching is by (user_id, device_id) and overlap of [session_start, last_event_at]. Every check after
    `matched` runs only on the unmatched sessions (a few), so the cost is a join of the two session sets.

    Needs: dialect, hour_start_ms, hour_end_ms, read_start_ms, horizon_ms, now_ms and the relations
      events, window          hour_events.sql / hour_sessions.sql(window=true) outputs; when `events` is
                              empty both are computed here from `source` (the Athena path)
      stream_sessions         SESSION_FIELDS rows the stream wrote (any hours; ISO strings)
      stream_late             LATE_FIELDS rows (the stream's late ledger)
      stream_rejected         REJECTED_FIELDS rows (the stream's rejected ledger)
      quarantine_accepted     event_id, user_id, device_id, event_ms of records the batch quarantined and the
                              stream's reject rules accept (quarantine_accepted.sql)
      raw_copies              event_id, copies (> 1) of event_ids sent more than once (duplicates, and
                              which late-ledger ids the stream may have counted on time) -#}
{% import 'batch/_reconcile_macros.sql' as r with context %}
{% set gap = contract.gap_ms %}
{% if dialect == 'athena' and ctas %}
{{ r.athena_ctas_header() }}
{% endif %}
WITH
{% if events %}
{% set ev = events %}
{% set win = window %}
{% else %}
{{ r.event_ctes(source) }},
{{ r.session_ctes('hour_events') }},
{% set ev = 'hour_events' %}
{% set win = 'window_sessions' %}
{% endif %}
stream_parsed AS (
    SELECT DISTINCT
        CAST(session_id AS VARCHAR) AS session_id,
        CAST(user_id AS INTEGER) AS user_id,
        CAST(device_id AS VARCHAR) AS device_id,
        {{ r.parse_iso('session_start') }} AS start_ms,
        {{ r.parse_iso('last_event_at') }} AS last_ms,
        CAST(event_count AS BIGINT) AS event_count
    FROM {{ stream_sessions }}
    -- the wire format sorts like time: skip other hours' rows before parsing
    WHERE last_event_at >= '{{ iso_text(read_start_ms) }}' AND session_start <= '{{ iso_text(horizon_ms) }}'
),
stream_w AS (
    SELECT *,
        start_ms >= {{ hour_start_ms }} AND start_ms < {{ hour_end_ms }} AS in_hour
    FROM stream_parsed
    WHERE last_ms >= {{ read_start_ms }} AND start_ms <= {{ horizon_ms }}
),
pairs AS (
    SELECT
        {{ r.bid('b') }} AS bid, b.in_hour AS b_in_hour, b.settled AS b_settled,
        s.user_id AS s_user_id, s.device_id AS s_device_id, s.session_id AS s_session_id, s.start_ms AS s_start, s.last_ms AS s_last, s.event_count AS s_count,
        s.in_hour AS s_in_hour,
        s.start_ms = b.start_ms AND s.last_ms = b.last_ms AS same_span,
        s.event_count - b.event_count AS excess
    FROM {{ win }} b
    JOIN stream_w s
        ON s.user_id = b.user_id AND s.device_id = b.device_id
        AND s.start_ms <= b.last_ms AND s.last_ms >= b.start_ms
),
pairs_agg AS (
    SELECT bid,
        count(*) AS n_stream,
        sum(s_count) AS stream_events,
        bool_or(same_span AND excess = 0) AS exact,
        max(CASE WHEN same_span AND excess > 0 THEN excess END) AS same_span_excess
    FROM pairs
    WHERE b_in_hour
    GROUP BY bid
),
batch_rows AS (
    SELECT {{ r.bid('b') }} AS bid, b.session_id, b.user_id, b.device_id, b.start_ms, b.last_ms, b.event_count, b.settled,
        coalesce(p.n_stream, 0) AS n_stream,
        coalesce(p.stream_events, 0) AS stream_events,
        coalesce(p.exact, FALSE) AS exact,
        p.same_span_excess
    FROM {{ win }} b
    LEFT JOIN pairs_agg p ON p.bid = {{ r.bid('b') }}
    WHERE b.in_hour
),
cand AS (
    SELECT * FROM batch_rows WHERE settled AND NOT exact
),
cand_pairs AS (
    SELECT p.bid,
        {{ r.str_agg("CAST(p.s_start AS VARCHAR) || '|' || CAST(p.s_last AS VARCHAR) || '|' || CAST(p.s_count AS VARCHAR)", ';', 'p.s_start') }} AS stream_sig,
        {{ r.str_agg("p.s_session_id || '|' || " ~ r.iso('p.s_start') ~ " || '|' || " ~ r.iso('p.s_last') ~ " || '|' || CAST(p.s_count AS VARCHAR)", ';', 'p.s_start') }} AS stream_desc
    FROM pairs p
    JOIN cand c ON c.bid = p.bid
    GROUP BY p.bid
),
cand_events AS (
    SELECT c.bid, e.user_id, e.device_id, e.event_id, e.event_ms
    FROM cand c
    JOIN {{ ev }} e
        ON e.user_id = c.user_id AND e.device_id = c.device_id AND e.event_ms BETWEEN c.start_ms AND c.last_ms
),
{{ r.late_ledger_ctes(stream_late, stream_rejected, raw_copies) }},
late_ids AS (
    SELECT event_id FROM late_ledger
),
rejected_ids AS (
    SELECT event_id FROM rejected_rows
),
cand_marks AS (
    SELECT ce.bid,
        count(l.event_id) AS ledger_events,
        count(x.event_id) AS rejected_events
    FROM cand_events ce
    LEFT JOIN late_ids l ON l.event_id = ce.event_id
    LEFT JOIN rejected_ids x ON x.event_id = ce.event_id
    GROUP BY ce.bid
),
{# late: the session's events without the ledger's, sessionized on their own. A ledger id the stream may have
    counted (more raw copies than ledger rows, see late_ledger_ctes) is taken out in some variants and kept in
    others: every subset of up to 4 such ids per session (past 4, the others go out only in the last variant,
    which takes out every ledger id). Any variant giving exactly the stream's sessions explains the session. #}
late_marked AS (
    SELECT ce.bid, ce.event_id, ce.event_ms,
        coalesce(l.never_counted, FALSE) AS out_always,
        coalesce(NOT l.never_counted, FALSE) AS maybe_out
    FROM cand_events ce
    LEFT JOIN late_ledger l ON l.event_id = ce.event_id
),
late_maybe AS (
    SELECT bid, event_id, row_number() OVER (PARTITION BY bid ORDER BY event_id) - 1 AS bit_no
    FROM late_marked
    WHERE maybe_out
),
late_bits AS (
    SELECT * FROM (VALUES (0, 1), (1, 2), (2, 4), (3, 8)) AS b (bit_no, weight)
),
late_bid_variants AS (
    SELECT n.bid, v.variant, n.n_variants
    FROM (
        SELECT c.bid,
            CASE least(count(mb.bit_no), 4) WHEN 0 THEN 1 WHEN 1 THEN 2 WHEN 2 THEN 4 WHEN 3 THEN 8 ELSE 16 END
                AS n_variants
        FROM cand c
        LEFT JOIN late_maybe mb ON mb.bid = c.bid
        GROUP BY c.bid
    ) n
    JOIN (
        SELECT * FROM (VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9), (10), (11), (12), (13), (14), (15))
            AS v0 (variant)
    ) v ON v.variant < n.n_variants
),
late_kept AS (
    SELECT bv.bid, bv.variant, e.event_id, e.event_ms
    FROM late_bid_variants bv
    JOIN late_marked e ON e.bid = bv.bid
    LEFT JOIN late_maybe mb ON mb.bid = e.bid AND mb.event_id = e.event_id
    LEFT JOIN late_bits b ON b.bit_no = mb.bit_no
    WHERE NOT e.out_always
        AND NOT CASE
            WHEN mb.bit_no IS NULL THEN FALSE
            WHEN b.weight IS NOT NULL THEN bv.variant % (2 * b.weight) >= b.weight
            ELSE bv.variant = bv.n_variants - 1
        END
),
{{ r.sessionize('late_sessions', 'late_kept', 'bid, variant') }},
late_sig AS (
    SELECT bid, variant,
        {{ r.str_agg("CAST(start_ms AS VARCHAR) || '|' || CAST(last_ms AS VARCHAR) || '|' || CAST(event_count AS VARCHAR)", ';', 'start_ms') }} AS sig
    FROM late_sessions
    GROUP BY bid, variant
),
late_fit AS (
    SELECT bv.bid, bool_or(coalesce(ls.sig, '') = coalesce(cp.stream_sig, '')) AS fits
    FROM late_bid_variants bv
    LEFT JOIN late_sig ls ON ls.bid = bv.bid AND ls.variant = bv.variant
    LEFT JOIN cand_pairs cp ON cp.bid = bv.bid
    GROUP BY bv.bid
),
cand_copies AS (
    SELECT ce.bid, sum(rc.copies - 1) AS extra_copies
    FROM cand_events ce
    JOIN raw_copy_counts rc ON rc.event_id = ce.event_id
    GROUP BY ce.bid
),
{# rule_difference: move what one side rejected and the other accepted, then sessionize the affected keys #}
added AS (
    SELECT lower(CAST(q.event_id AS VARCHAR)) AS event_id, CAST(q.user_id AS INTEGER) AS user_id,
        CAST(q.device_id AS VARCHAR) AS device_id, CAST(q.event_ms AS BIGINT) AS event_ms
    FROM {{ quarantine_accepted }} q
    WHERE q.event_ms BETWEEN {{ read_start_ms }} AND {{ horizon_ms }}
        AND lower(CAST(q.event_id AS VARCHAR)) NOT IN (SELECT event_id FROM {{ ev }})
        AND lower(CAST(q.event_id AS VARCHAR)) NOT IN (SELECT event_id FROM late_ids)
),
rule_keys AS (
    SELECT DISTINCT e.user_id, e.device_id FROM {{ ev }} e JOIN rejected_ids x ON x.event_id = e.event_id
    UNION
    SELECT DISTINCT user_id, device_id FROM added
),
rule_events AS (
    SELECT e.user_id, e.device_id, e.event_id, e.event_ms, 0 AS is_added
    FROM {{ ev }} e
    JOIN rule_keys k ON k.user_id = e.user_id AND k.device_id = e.device_id
    LEFT JOIN late_ids l ON l.event_id = e.event_id
    LEFT JOIN rejected_ids x ON x.event_id = e.event_id
    WHERE l.event_id IS NULL AND x.event_id IS NULL
    UNION ALL
    SELECT user_id, device_id, event_id, event_ms, 1 AS is_added FROM added
),
{{ r.sessionize('rule_sessions', 'rule_events', 'user_id, device_id', aggs=',\n        sum(is_added) AS added_events', count='count(DISTINCT event_id)') }},
rule_sig AS (
    SELECT c.bid,
        {{ r.str_agg("CAST(rs.start_ms AS VARCHAR) || '|' || CAST(rs.last_ms AS VARCHAR) || '|' || CAST(rs.event_count AS VARCHAR)", ';', 'rs.start_ms') }} AS sig,
        sum(rs.added_events) AS added_events
    FROM cand c
    JOIN rule_sessions rs
        ON rs.user_id = c.user_id AND rs.device_id = c.device_id
        AND rs.start_ms <= c.last_ms AND rs.last_ms >= c.start_ms
    GROUP BY c.bid
),
batch_classified AS (
    SELECT
        'batch' AS side,
        CASE
            WHEN NOT b.settled THEN 'deferred'
            WHEN b.exact THEN 'matched'
            WHEN coalesce(m.ledger_events, 0) > 0 AND coalesce(lf.fits, FALSE) THEN 'late'
            WHEN b.same_span_excess > 0 AND b.same_span_excess <= coalesce(cc.extra_copies, 0) THEN 'duplicate'
            WHEN (coalesce(m.rejected_events, 0) > 0 OR coalesce(rs.added_events, 0) > 0)
                AND coalesce(rs.sig, '') = coalesce(cp.stream_sig, '') THEN 'rule_difference'
            WHEN b.n_stream = 0 THEN 'missing_in_stream'
            ELSE 'mismatch'
        END AS cause,
        b.user_id, b.device_id, b.start_ms,
        b.session_id AS batch_session_id, b.start_ms AS batch_start_ms, b.last_ms AS batch_last_ms,
        b.event_count AS batch_events,
        b.n_stream AS stream_sessions, b.stream_events,
        cp.stream_desc,
        coalesce(m.ledger_events, 0) AS ledger_events,
        coalesce(m.rejected_events, 0) AS rejected_events,
        coalesce(rs.added_events, 0) AS added_events,
        coalesce(cc.extra_copies, 0) AS extra_copies
    FROM batch_rows b
    LEFT JOIN cand_marks m ON m.bid = b.bid
    LEFT JOIN cand_pairs cp ON cp.bid = b.bid
    LEFT JOIN late_fit lf ON lf.bid = b.bid
    LEFT JOIN cand_copies cc ON cc.bid = b.bid
    LEFT JOIN rule_sig rs ON rs.bid = b.bid
),
stream_only AS (
    SELECT s.*
    FROM stream_w s
    LEFT JOIN (SELECT DISTINCT s_user_id, s_device_id, s_start, s_last, s_count FROM pairs WHERE s_in_hour) p
        ON p.s_user_id = s.user_id AND p.s_device_id = s.device_id AND p.s_start = s.start_ms
        AND p.s_last = s.last_ms AND p.s_count = s.event_count
    WHERE s.in_hour AND p.s_user_id IS NULL
),
{# a stream-only session overlaps no batch session, so none of its events is in a batch session: when as many
   of them as it counts are records the batch quarantined (and the stream accepts), the rules explain it, even
   where moving them into the batch merges them with events the stream never saw (an outage just before) #}
stream_only_quarantined AS (
    SELECT s.user_id, s.device_id, s.start_ms, s.last_ms, count(DISTINCT a.event_id) AS quarantined_events
    FROM stream_only s
    JOIN added a
        ON a.user_id = s.user_id AND a.device_id = s.device_id AND a.event_ms BETWEEN s.start_ms AND s.last_ms
    GROUP BY s.user_id, s.device_id, s.start_ms, s.last_ms
),
stream_classified AS (
    SELECT
        'stream' AS side,
        CASE
            WHEN s.last_ms + {{ gap }} > {{ horizon_ms }} THEN 'deferred'
            WHEN rs.user_id IS NOT NULL THEN 'rule_difference'
            WHEN coalesce(qs.quarantined_events, 0) >= s.event_count THEN 'rule_difference'
            ELSE 'missing_in_batch'
        END AS cause,
        s.user_id, s.device_id, s.start_ms,
        CAST(NULL AS VARCHAR) AS batch_session_id, CAST(NULL AS BIGINT) AS batch_start_ms,
        CAST(NULL AS BIGINT) AS batch_last_ms, CAST(NULL AS BIGINT) AS batch_events,
        1 AS stream_sessions, s.event_count AS stream_events,
        s.session_id || '|' || {{ r.iso('s.start_ms') }} || '|' || {{ r.iso('s.last_ms') }} || '|'
            || CAST(s.event_count AS VARCHAR) AS stream_desc,
        0 AS ledger_events, 0 AS rejected_events,
        coalesce(rs.added_events, qs.quarantined_events, 0) AS added_events, 0 AS extra_copies
    FROM stream_only s
    LEFT JOIN rule_sessions rs
        ON rs.user_id = s.user_id AND rs.device_id = s.device_id AND rs.start_ms = s.start_ms
        AND rs.last_ms = s.last_ms AND rs.event_count = s.event_count AND rs.added_events > 0
    LEFT JOIN stream_only_quarantined qs
        ON qs.user_id = s.user_id AND qs.device_id = s.device_id AND qs.start_ms = s.start_ms
        AND qs.last_ms = s.last_ms
)
SELECT * FROM batch_classified
UNION ALL
SELECT * FROM stream_classified
