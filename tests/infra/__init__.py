"""Tests: infra."""
