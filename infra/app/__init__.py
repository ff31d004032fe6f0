"""The Chalice app as a CloudFormation stack: its merge template, its runtime (runtime.py) and its packaging."""
