"""The local edge: an HTTPS front that plays CloudFront in `make run`.

A second NGINX, in front of the local proxy's public listener, doing what the
distribution (infra/cloudfront/distribution.yaml) does in AWS: TLS with the
distribution's security policy, plain HTTP redirected to HTTPS, the response
headers policy's headers, the old-domain redirect run from
infra/cloudfront/redirect.js itself (through njs), and the secret origin
header and CloudFront-Viewer-Address added on the way to the proxy.
"""
