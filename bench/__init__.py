"""Benchmarks, not run by CI, each printing side-by-side figures: proxy_bench, screen_bench, audit_bench and
edge_bench (make bench, bench-screen, bench-audit, bench-edge; bench/README.md)."""
