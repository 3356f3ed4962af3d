"""Helpers that tests and benchmarks import (tests/conftest.py keeps only the fixtures):

- common: ROOT, free_port, wait_for (poll a condition until a deadline; tests never sleep)
- redisserver: RedisServer, a private redis-server on a free port
- workers: Worker (a real `celery worker` subprocess), celery_app (a producer app)
- api: a state, config and app with the API mounted, task updates, PlanEnv (fix-it on fakeredis)
- exporter_process: the daemon as a subprocess (ExporterProcess, run_cli, parse_metrics, ...)
- ledger: the ledger accuracy tests' exporter process, task mix and backend truth
- metrics: an exporter's /metrics as samples, summed by labels
- promql_names: metric names read by the shipped rules and dashboards; load_module
- prometheus: a real Prometheus on the shipped config and rules (Stack)
- beat_process: `celery beat` with RedBeat as a subprocess (Beat)
- cluster (FakeReader), beat, hostile (hostile input), rabbitnode (a private RabbitMQ node)
"""
