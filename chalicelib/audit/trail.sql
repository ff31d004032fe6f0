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
        -- the id in the (decoded, normalized) path; else the top-level patient_id
        -- of a write's JSON body; else the patient_id a note listing asked for,
        -- which NGINX decodes as HOSP's query parser does (query_patient_id), so
        -- that nothing here decodes a client's bytes (a decoding that fails would
        -- fail the whole export).
        -- The X-Patient-Id header is not used: HOSP does not act on it.
        CASE
            WHEN regexp_like(s.normalized_path, '^/+patients/+[1-9][0-9]{0,17}(\.json|/+screen(\.json)?)?/*$')
                THEN regexp_extract(s.normalized_path, '^/+patients/+([1-9][0-9]{0,17})', 1)
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
        AND (:patient_id = '' OR patient = :patient_id)
        AND (:method = '' OR method = :method)
        AND (:path_prefix = '' OR starts_with(normalized_path, :path_prefix))
        -- A line whose status is missing or not a number counts as status 0, so that
        -- it is shown unless a status is asked for.
        AND coalesce(status, 0) BETWEEN :status_low AND :status_high
       )
)

-- A cell a spreadsheet would run as a formula (one starting with =, +, -, @, a tab
-- or a carriage return) is prefixed with an apostrophe, here, because the Lambda
-- never sees the rows.
SELECT
    CASE WHEN logged_at IS NULL THEN '' ELSE "time" END AS "time",
    CASE WHEN regexp_like("user", '^[-=+@\t\r]') THEN '''' || "user" ELSE coalesce("user", '') END AS "user",
    CASE
        WHEN regexp_like(on_behalf_of, '^[-=+@\t\r]') THEN '''' || on_behalf_of
        ELSE coalesce(on_behalf_of, '')
    END AS on_behalf_of,
    authenticated,
    CASE WHEN regexp_like(client, '^[-=+@\t\r]') THEN '''' || client ELSE coalesce(client, '') END AS client_ip,
    CASE WHEN regexp_like(method, '^[-=+@\t\r]') THEN '''' || method ELSE coalesce(method, '') END AS method,
    CASE
        WHEN logged_at IS NULL THEN '(unreadable log line)'
        WHEN regexp_like(path, '^[-=+@\t\r]') THEN '''' || path
        ELSE path
    END AS path,
    CASE WHEN regexp_like(patient, '^[-=+@\t\r]') THEN '''' || patient ELSE coalesce(patient, '') END AS patient_id,
    status,
    attempts,
    CASE WHEN regexp_like(request_id, '^[-=+@\t\r]') THEN '''' || request_id ELSE coalesce(request_id, '') END
        AS request_id,
    CASE WHEN regexp_like(user_agent, '^[-=+@\t\r]') THEN '''' || user_agent ELSE coalesce(user_agent, '') END
        AS user_agent
FROM chosen
ORDER BY logged_at NULLS LAST, request_id
