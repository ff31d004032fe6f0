"""Benchmarks of the NGINX retry proxy; run `python -m bench.proxy_bench` (see bench/README.md)."""
