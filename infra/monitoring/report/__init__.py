"""The reliability report: what HOSP did and what users saw, from the proxy's access log.

`make report` (or `python -m infra.monitoring.report --help`) reads the log from
a file, a directory or the audit archive in S3, crunches it with DuckDB
(crunch.py) and writes one self-contained HTML file with matplotlib's plots
(render.py). docs/report.md is the reader's guide.
"""
