"""The proxy fleet on EC2: its template (proxy.yaml) and its bootstrap bundle."""
