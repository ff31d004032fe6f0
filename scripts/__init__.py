"""Commands make runs: system packages, the dependency locks."""
