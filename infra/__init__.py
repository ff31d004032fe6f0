"""Infrastructure: NGINX proxy, EC2 fleet, CloudFront (later)."""
