"""The audit trail's AWS pipeline: the access log's archive, its Athena table and workgroup."""
