"""IAM policies of the Chalice stages, generated from one definition (policies.py)."""
