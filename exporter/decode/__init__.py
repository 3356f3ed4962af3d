"""Total decoders for what the exporter reads from outside: each one never raises.

`records` turns a stored or published Celery result into a `TaskUpdate` or a counted skip
reason (every consumer uses it: pub/sub, reconcile, the API's backend fallback, the
planner); `events` turns a Celery task event into a `TaskUpdate`; `clean` holds the rules
for text, nesting, numbers and dates that every decoder (records, events, saved ledger
state) applies.
"""
