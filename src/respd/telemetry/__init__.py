"""What an operator watches respd by: Prometheus metrics, OpenTelemetry traces, the access log."""
