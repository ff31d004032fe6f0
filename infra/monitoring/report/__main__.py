"""python -m infra.monitoring.report: the reliability report (docs/report.md)."""

from infra.monitoring.report.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
