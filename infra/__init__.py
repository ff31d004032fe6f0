"""Infrastructure as code and its tools: the NGINX proxy (nginx/), the EC2 fleet (ec2/), the network (network/),
CloudFront (cloudfront/), the note queues (notes/), the audit trail (athena/), the IAM policies (iam/), the Chalice
app's stack (app/) and `make deploy` (deploy.py)."""
