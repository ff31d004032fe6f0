"""The audit query on DuckDB, over the proxy's access log file: the local stack's stand-in for Athena.

The query text is trail.sql, the one Athena runs, translated by sqlglot from
Trino's dialect to DuckDB's; the values go in as parameters, as on Athena. The
`access_log` relation is the log file read with the schema's column types
(log_schema.duckdb_columns), plus the `day` column that Athena's partitions
give: the day a line was logged, or `today` for a line that cannot be read
(Athena puts it in the day it reached the archive). `today` is the caller's, not
DuckDB's clock: the local engine (audit_engine.py) gives the day in UTC, and a
test pins it.

A line that is not valid JSON is not skipped: DuckDB reads it as a row of NULLs,
as Athena's table does, and the query shows it (docs/audit.md).

duckdb and sqlglot are development packages (requirements/dev.in): this module
lives in local/, outside the Lambda package, and imports them on first use.
"""

from __future__ import annotations

import functools
import glob
import sys
from datetime import date
from pathlib import Path
from typing import Any

from chalicelib.audit import log_schema, query


@functools.cache
def duckdb_sql() -> str:
    """trail.sql in DuckDB's dialect, with positional `?`s."""
    import sqlglot  # noqa: PLC0415 - on first use: importing it takes longer than the rest

    text, _ = query.positional()
    # sqlglot parses by recursion, and each escaped column nests one replace() per
    # character it escapes (infra/audit_escaping.py): 67 deep, where Python's default
    # limit of 1,000 frames stops sqlglot at about 40. Trino and DuckDB parse it as it is.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5_000))
    try:
        return str(sqlglot.transpile(text, read="trino", write="duckdb")[0])
    finally:
        sys.setrecursionlimit(limit)


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def access_log_view(log_glob: str, today: date) -> str:
    """The CREATE VIEW giving the log the table's columns (the path and the day are ours, not a request's).

    A line that cannot be read has no time: it counts as logged on `today`.
    """
    columns = "{" + ", ".join(f"{_quoted(n)}: {_quoted(t)}" for n, t in log_schema.duckdb_columns().items()) + "}"
    return (
        "CREATE OR REPLACE TEMP VIEW access_log AS "
        f"SELECT *, coalesce(strftime(logged_at, '%Y-%m-%d'), {_quoted(f'{today:%Y-%m-%d}')}) "
        f"AS {log_schema.PARTITION} "
        f"FROM read_json({_quoted(log_glob)}, format = 'newline_delimited', columns = {columns}, "
        "ignore_errors = true, maximum_object_size = 1048576)"
    )


def export_csv(log_glob: str, parameters: dict[str, Any], destination: Path, *, today: date) -> None:
    """Run the trail query and write its CSV to `destination`, as Athena writes its result.

    `today`: the day (UTC) the export reads the log, the day partition of a line
    that cannot be read (access_log_view).

    Athena's CSV quotes every value and has a header row; DuckDB's COPY does the
    same with FORCE_QUOTE. The rows stream from the reader to the file: memory
    does not grow with their number.
    """
    import duckdb  # noqa: PLC0415 - on first use, as sqlglot

    connection = duckdb.connect()
    try:
        if not glob.glob(log_glob):
            raise FileNotFoundError(f"no access log at {log_glob}")
        connection.execute(access_log_view(log_glob, today))
        connection.execute(
            f"COPY ({duckdb_sql()}) TO {_quoted(str(destination))} (FORMAT csv, HEADER, FORCE_QUOTE *)",
            query.values(parameters),
        )
    finally:
        connection.close()
