"""`make demo`: a playground for trying the exporter on one machine (`python -m demo`).

Kept out of the `exporter` package and its wheel: `__main__` parses the options and prints the
progress, `stack` starts and stops the processes (Redis, workers, beat, the exporter,
Prometheus), `app` is the demo's Celery app and load generator.
"""
