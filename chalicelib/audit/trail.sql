-- The audit trail: one row per request the proxy saw, oldest first.
--
-- This text is what Athena runs (Trino SQL); locally DuckDB runs the same text
-- after sqlglot translates it (chalicelib/audit/duckdb_engine.py). Nothing from a
-- request is ever pasted in here: every :name below is an execution parameter,
-- turned into a positional `?` by chalicelib/audit/query.py, which also says what
-- each one holds. The table's columns are chalicelib/audit/log_schema.py.
--
-- Why the day range is wider than the time range: a line lands in the partition
-- of the day it reached the archive, which is the day it was logged or a later
-- one (docs/audit.md).
--
-- on_behalf_of is in the log: the note worker says whose note it writes as the
-- service account (X-On-Behalf-Of), and the proxy logs that on its internal
-- listener only, which only the Lambdas reach.
WITH trail AS (
    SELECT
        s.*,
        -- The patient record HOSP acted on, found the way HOSP's router finds it:
        -- the id in the (decoded, normalized) path; else the top-level patient_ids
        -- of a write's JSON body; else the patient_ids a note listing asked for,
        -- which NGINX decodes as HOSP's query parser does (query_patient_id), so
        -- that nothing here decodes a client's bytes (a decoding that fails would
        -- fail the whole export). NGINX logs a body's or a query's patient ids as
        -- ids (ASCII digits) or not-an-id, each once, joined by ",".
        -- The X-Patient-Id header is not used: HOSP does not act on it.
        CASE
            WHEN regexp_like(s.normalized_path, '^/+patients/+[1-9][0-9]{0,17}(\.json)?/*$')
                THEN regexp_extract(s.normalized_path, '^/+patients/+([1-9][0-9]{0,17})', 1)
            -- An X-ray screen's path, as the proxy that routes screens defines it
            -- (:screen_path, chalicelib/screen_path.py: any format suffix); its id
            -- without leading zeros.
            WHEN regexp_like(s.normalized_path, :screen_path)
                THEN coalesce(regexp_extract(s.normalized_path, '^/patients/0*([1-9][0-9]{0,17})/', 1), '')
            WHEN s.body_patient_id <> '' THEN s.body_patient_id
            WHEN s.query_patient_id <> '' THEN s.query_patient_id
            -- A line logged before query_patient_id was: a note listing's first
            -- patient_id= value in its query, if it is ASCII digits as written (no
            -- decoding), without leading zeros.
            WHEN s.query_patient_id IS NULL AND regexp_like(s.normalized_path, '^/+notes(\.json)?/*$')
                THEN coalesce(
                    regexp_extract(regexp_extract(s.query, '(^|&)patient_id=([^&]*)', 2), '^0*([0-9]+)$', 1), ''
                )
            ELSE ''
        END AS patient,
        -- The user is the name the request claimed; whether HOSP accepted it is
        -- another matter. Requests the proxy answered itself were never judged.
        CASE
            WHEN s.logged_at IS NULL THEN ''
            -- /audit's own callers sign in with Cognito, not with HOSP.
            WHEN s.route = 'audit' THEN ''
            WHEN s."user" = '' OR s.status = 401 THEN 'false'
            WHEN s.upstream_status = '' THEN ''
            ELSE 'true'
        END AS authenticated,
        -- Attempts: upstream_status has one entry per attempt, joined by ", " or " : ".
        CASE
            WHEN s.upstream_status = '' THEN 0
            ELSE length(s.upstream_status) - length(replace(replace(s.upstream_status, ',', ''), ':', '')) + 1
        END AS attempts,
        -- The user's address as CloudFront saw it, else the TCP peer.
        CASE
            WHEN s.viewer_address <> '' THEN regexp_replace(s.viewer_address, ':[0-9]+$', '')
            ELSE s.client_ip
        END AS client
    FROM access_log AS s
    WHERE s.day BETWEEN :first_day AND :last_day
),

chosen AS (
    SELECT *
    FROM trail
    -- A line the archive could not read has no time, user or path to filter on:
    -- it is always shown, so that no request can hide from the trail by breaking
    -- its own log line.
    WHERE logged_at IS NULL
       OR (
            logged_at >= CAST(:from_time AS timestamp)
        AND logged_at < CAST(:to_time AS timestamp)
        AND (:user = '' OR "user" = :user OR on_behalf_of = :user)
        -- A request may name more than one patient (a body or a query naming
        -- patient_id twice: which one HOSP takes is unknown), listed joined by
        -- ","; it is found by each of them.
        AND (:patient_id = '' OR strpos(',' || patient || ',', ',' || :patient_id || ',') > 0)
        AND (:method = '' OR method = :method)
        AND (:path_prefix = '' OR starts_with(normalized_path, :path_prefix))
        -- A line whose status is missing or not a number counts as status 0, so that
        -- it is shown unless a status is asked for.
        AND coalesce(status, 0) BETWEEN :status_low AND :status_high
       )
),

-- What each cell shows. A control character (U+0000 to U+001F, U+007F) is written
-- as the four characters \xHH, two lowercase hex digits, as the log writes a byte
-- that is not UTF-8 (docs/access-log.md, "Client text"): the log doubles a client's
-- backslashes, so \x01 here is the character U+0001 and \\x01 a client's own text.
-- A NUL, a line break or a terminal's escape sequence never reaches a cell raw.
shown AS (
    SELECT
        logged_at,
        "time",
        authenticated,
        status,
        attempts,
        request_id AS ordering,
        -- Which of the proxy's listeners took the request: public (a user, through the
        -- front door) or internal (the app's Lambdas: the interceptor's screen, the note
        -- worker's reads and note). A screen is one row of each, with one request id.
        -- The value is the proxy's own, never a client's.
        CASE WHEN listener IN ('public', 'internal') THEN listener ELSE '' END AS listener,
        CASE
            WHEN regexp_like(coalesce("user", ''), '[\x00-\x1f\x7f]') THEN
                replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(coalesce("user", '')
                , chr(0), '\x00'), chr(1), '\x01'), chr(2), '\x02'), chr(3), '\x03')
                , chr(4), '\x04'), chr(5), '\x05'), chr(6), '\x06'), chr(7), '\x07')
                , chr(8), '\x08'), chr(9), '\x09'), chr(10), '\x0a'), chr(11), '\x0b')
                , chr(12), '\x0c'), chr(13), '\x0d'), chr(14), '\x0e'), chr(15), '\x0f')
                , chr(16), '\x10'), chr(17), '\x11'), chr(18), '\x12'), chr(19), '\x13')
                , chr(20), '\x14'), chr(21), '\x15'), chr(22), '\x16'), chr(23), '\x17')
                , chr(24), '\x18'), chr(25), '\x19'), chr(26), '\x1a'), chr(27), '\x1b')
                , chr(28), '\x1c'), chr(29), '\x1d'), chr(30), '\x1e'), chr(31), '\x1f')
                , chr(127), '\x7f')
            ELSE coalesce("user", '')
        END AS "user",
        CASE
            WHEN regexp_like(coalesce(on_behalf_of, ''), '[\x00-\x1f\x7f]') THEN
                replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(coalesce(on_behalf_of, '')
                , chr(0), '\x00'), chr(1), '\x01'), chr(2), '\x02'), chr(3), '\x03')
                , chr(4), '\x04'), chr(5), '\x05'), chr(6), '\x06'), chr(7), '\x07')
                , chr(8), '\x08'), chr(9), '\x09'), chr(10), '\x0a'), chr(11), '\x0b')
                , chr(12), '\x0c'), chr(13), '\x0d'), chr(14), '\x0e'), chr(15), '\x0f')
                , chr(16), '\x10'), chr(17), '\x11'), chr(18), '\x12'), chr(19), '\x13')
                , chr(20), '\x14'), chr(21), '\x15'), chr(22), '\x16'), chr(23), '\x17')
                , chr(24), '\x18'), chr(25), '\x19'), chr(26), '\x1a'), chr(27), '\x1b')
                , chr(28), '\x1c'), chr(29), '\x1d'), chr(30), '\x1e'), chr(31), '\x1f')
                , chr(127), '\x7f')
            ELSE coalesce(on_behalf_of, '')
        END AS on_behalf_of,
        CASE
            WHEN regexp_like(coalesce(client, ''), '[\x00-\x1f\x7f]') THEN
                replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(coalesce(client, '')
                , chr(0), '\x00'), chr(1), '\x01'), chr(2), '\x02'), chr(3), '\x03')
                , chr(4), '\x04'), chr(5), '\x05'), chr(6), '\x06'), chr(7), '\x07')
                , chr(8), '\x08'), chr(9), '\x09'), chr(10), '\x0a'), chr(11), '\x0b')
                , chr(12), '\x0c'), chr(13), '\x0d'), chr(14), '\x0e'), chr(15), '\x0f')
                , chr(16), '\x10'), chr(17), '\x11'), chr(18), '\x12'), chr(19), '\x13')
                , chr(20), '\x14'), chr(21), '\x15'), chr(22), '\x16'), chr(23), '\x17')
                , chr(24), '\x18'), chr(25), '\x19'), chr(26), '\x1a'), chr(27), '\x1b')
                , chr(28), '\x1c'), chr(29), '\x1d'), chr(30), '\x1e'), chr(31), '\x1f')
                , chr(127), '\x7f')
            ELSE coalesce(client, '')
        END AS client_ip,
        CASE
            WHEN regexp_like(coalesce(method, ''), '[\x00-\x1f\x7f]') THEN
                replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(coalesce(method, '')
                , chr(0), '\x00'), chr(1), '\x01'), chr(2), '\x02'), chr(3), '\x03')
                , chr(4), '\x04'), chr(5), '\x05'), chr(6), '\x06'), chr(7), '\x07')
                , chr(8), '\x08'), chr(9), '\x09'), chr(10), '\x0a'), chr(11), '\x0b')
                , chr(12), '\x0c'), chr(13), '\x0d'), chr(14), '\x0e'), chr(15), '\x0f')
                , chr(16), '\x10'), chr(17), '\x11'), chr(18), '\x12'), chr(19), '\x13')
                , chr(20), '\x14'), chr(21), '\x15'), chr(22), '\x16'), chr(23), '\x17')
                , chr(24), '\x18'), chr(25), '\x19'), chr(26), '\x1a'), chr(27), '\x1b')
                , chr(28), '\x1c'), chr(29), '\x1d'), chr(30), '\x1e'), chr(31), '\x1f')
                , chr(127), '\x7f')
            ELSE coalesce(method, '')
        END AS method,
        CASE
            WHEN regexp_like(coalesce(path, ''), '[\x00-\x1f\x7f]') THEN
                replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(coalesce(path, '')
                , chr(0), '\x00'), chr(1), '\x01'), chr(2), '\x02'), chr(3), '\x03')
                , chr(4), '\x04'), chr(5), '\x05'), chr(6), '\x06'), chr(7), '\x07')
                , chr(8), '\x08'), chr(9), '\x09'), chr(10), '\x0a'), chr(11), '\x0b')
                , chr(12), '\x0c'), chr(13), '\x0d'), chr(14), '\x0e'), chr(15), '\x0f')
                , chr(16), '\x10'), chr(17), '\x11'), chr(18), '\x12'), chr(19), '\x13')
                , chr(20), '\x14'), chr(21), '\x15'), chr(22), '\x16'), chr(23), '\x17')
                , chr(24), '\x18'), chr(25), '\x19'), chr(26), '\x1a'), chr(27), '\x1b')
                , chr(28), '\x1c'), chr(29), '\x1d'), chr(30), '\x1e'), chr(31), '\x1f')
                , chr(127), '\x7f')
            ELSE coalesce(path, '')
        END AS path,
        CASE
            WHEN regexp_like(coalesce(patient, ''), '[\x00-\x1f\x7f]') THEN
                replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(coalesce(patient, '')
                , chr(0), '\x00'), chr(1), '\x01'), chr(2), '\x02'), chr(3), '\x03')
                , chr(4), '\x04'), chr(5), '\x05'), chr(6), '\x06'), chr(7), '\x07')
                , chr(8), '\x08'), chr(9), '\x09'), chr(10), '\x0a'), chr(11), '\x0b')
                , chr(12), '\x0c'), chr(13), '\x0d'), chr(14), '\x0e'), chr(15), '\x0f')
                , chr(16), '\x10'), chr(17), '\x11'), chr(18), '\x12'), chr(19), '\x13')
                , chr(20), '\x14'), chr(21), '\x15'), chr(22), '\x16'), chr(23), '\x17')
                , chr(24), '\x18'), chr(25), '\x19'), chr(26), '\x1a'), chr(27), '\x1b')
                , chr(28), '\x1c'), chr(29), '\x1d'), chr(30), '\x1e'), chr(31), '\x1f')
                , chr(127), '\x7f')
            ELSE coalesce(patient, '')
        END AS patient_id,
        CASE
            WHEN regexp_like(coalesce(request_id, ''), '[\x00-\x1f\x7f]') THEN
                replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(coalesce(request_id, '')
                , chr(0), '\x00'), chr(1), '\x01'), chr(2), '\x02'), chr(3), '\x03')
                , chr(4), '\x04'), chr(5), '\x05'), chr(6), '\x06'), chr(7), '\x07')
                , chr(8), '\x08'), chr(9), '\x09'), chr(10), '\x0a'), chr(11), '\x0b')
                , chr(12), '\x0c'), chr(13), '\x0d'), chr(14), '\x0e'), chr(15), '\x0f')
                , chr(16), '\x10'), chr(17), '\x11'), chr(18), '\x12'), chr(19), '\x13')
                , chr(20), '\x14'), chr(21), '\x15'), chr(22), '\x16'), chr(23), '\x17')
                , chr(24), '\x18'), chr(25), '\x19'), chr(26), '\x1a'), chr(27), '\x1b')
                , chr(28), '\x1c'), chr(29), '\x1d'), chr(30), '\x1e'), chr(31), '\x1f')
                , chr(127), '\x7f')
            ELSE coalesce(request_id, '')
        END AS request_id,
        CASE
            WHEN regexp_like(coalesce(user_agent, ''), '[\x00-\x1f\x7f]') THEN
                replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(coalesce(user_agent, '')
                , chr(0), '\x00'), chr(1), '\x01'), chr(2), '\x02'), chr(3), '\x03')
                , chr(4), '\x04'), chr(5), '\x05'), chr(6), '\x06'), chr(7), '\x07')
                , chr(8), '\x08'), chr(9), '\x09'), chr(10), '\x0a'), chr(11), '\x0b')
                , chr(12), '\x0c'), chr(13), '\x0d'), chr(14), '\x0e'), chr(15), '\x0f')
                , chr(16), '\x10'), chr(17), '\x11'), chr(18), '\x12'), chr(19), '\x13')
                , chr(20), '\x14'), chr(21), '\x15'), chr(22), '\x16'), chr(23), '\x17')
                , chr(24), '\x18'), chr(25), '\x19'), chr(26), '\x1a'), chr(27), '\x1b')
                , chr(28), '\x1c'), chr(29), '\x1d'), chr(30), '\x1e'), chr(31), '\x1f')
                , chr(127), '\x7f')
            ELSE coalesce(user_agent, '')
        END AS user_agent
    FROM chosen
)

-- A cell a spreadsheet would run as a formula (one starting with =, +, - or @; a tab
-- or a carriage return is escaped above) is prefixed with an apostrophe, here,
-- because the Lambda never sees the rows.
SELECT
    CASE WHEN logged_at IS NULL THEN '' ELSE "time" END AS "time",
    CASE WHEN regexp_like("user", '^[-=+@]') THEN '''' || "user" ELSE "user" END AS "user",
    CASE WHEN regexp_like(on_behalf_of, '^[-=+@]') THEN '''' || on_behalf_of ELSE on_behalf_of END AS on_behalf_of,
    authenticated,
    CASE WHEN regexp_like(client_ip, '^[-=+@]') THEN '''' || client_ip ELSE client_ip END AS client_ip,
    CASE WHEN regexp_like(method, '^[-=+@]') THEN '''' || method ELSE method END AS method,
    CASE
        WHEN logged_at IS NULL THEN '(unreadable log line)'
        WHEN regexp_like(path, '^[-=+@]') THEN '''' || path
        ELSE path
    END AS path,
    CASE WHEN regexp_like(patient_id, '^[-=+@]') THEN '''' || patient_id ELSE patient_id END AS patient_id,
    status,
    attempts,
    CASE WHEN regexp_like(request_id, '^[-=+@]') THEN '''' || request_id ELSE request_id END AS request_id,
    listener,
    CASE WHEN regexp_like(user_agent, '^[-=+@]') THEN '''' || user_agent ELSE user_agent END AS user_agent
FROM shown
ORDER BY logged_at NULLS LAST, ordering
