"""The test suite: unit, functional (Chalice client, moto), integration (real NGINX and HOSP stand-in), infra."""
