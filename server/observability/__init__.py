"""What the server tells operators: Prometheus metrics, structured logs, per-turn records."""
