"""Celery beat, watched: schedule sources (RedBeat, django-celery-beat, a schedule file), the
schedule model and its next-due arithmetic, and the join of entries with the task ledger.

Layering: `model`, `cron`, `schedule` and `decode` are pure; `redbeat`, `django` and
`schedule_file` read one store each (read-only) into a `BeatRead`; `source` runs a reader
periodically and keeps the latest read on a `board`; `join` combines a read with the ledger
for the collector (`exporter/collectors/beat.py`). Nothing here imports celery.
"""
