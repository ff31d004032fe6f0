"""The Chalice app as a CloudFormation stack: the merge template, packaging, and the deploy of every stack."""
