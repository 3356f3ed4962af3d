"""celery-ops-exporter: a Prometheus exporter and operator API for Celery clusters."""

__version__ = "0.1.0"
