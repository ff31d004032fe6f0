"""Local-only tooling: the HOSP stand-in and the local stack; never packaged into the Lambda."""
