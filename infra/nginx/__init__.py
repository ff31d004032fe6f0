"""The NGINX retry proxy: config renderer and DNS refresh."""
