"""Celery event messages as kombu's Redis transport carries them, decoded without kombu.

A published event is a kombu envelope (JSON): `body` (base64 when `properties.body_encoding`
is `base64`, kombu's default on Redis), `content-type`, `content-encoding`, `headers` and
`properties`. The body is one event (a dict) or, for Celery's buffered groups (`task.multi`),
a list of them. Only `application/json` in UTF-8 is decoded; anything else (pickle above all)
is counted as skipped and never decoded, and what does not parse is counted, never raised.
Nesting is bounded by orjson (it refuses documents deeper than 1,024) and nothing here walks
an event; the events decoder (`decode/events.parse_event`) cleans every field it keeps with
`exporter.decode.clean`, as the result decoder does.

Each event then gets what Celery's `EventReceiver.event_from_message` adds, so the events
source sees the same dicts from either consumer: `clock` (a Lamport clock, as `app.clock`),
`timestamp` moved by the sender's `utcoffset`, and `local_received`.
"""

from __future__ import annotations

import time
from binascii import a2b_base64
from collections.abc import Callable
from typing import Any

import orjson

JSON = "application/json"
PICKLE = "application/x-python-serialize"
CLIENT_CLOCK_SKEW = -1  # celery.events.receiver: task-sent's clock is the receiver's, minus 1


class EventDecoder:
    """Turns raw message payloads into event dicts; counts what it skips or cannot parse.

    Not thread-safe: one consumer thread owns it (the Lamport clock is plain state).
    """

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.clock = 0
        self.skipped: dict[str, int] = {}
        self.errors = 0
        self._now = now

    def take_counts(self) -> dict[str, int]:
        """Counts since the last call, as events-source keys (`skipped:<why>`, parse_errors)."""
        counts = {f"skipped:{why}": n for why, n in self.skipped.items()}
        if self.errors:
            counts["parse_errors"] = self.errors
        self.skipped, self.errors = {}, 0
        return counts

    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def decode(self, data: bytes, here: float, out: list[dict[str, Any]]) -> None:
        """Append the events of one message to `out`; `here` is our utcoffset in hours."""
        try:
            envelope = orjson.loads(data)
            content_type = envelope.get("content-type")
            if content_type != JSON:
                self._skip("pickle" if content_type == PICKLE else "not_json")
                return
            encoding = envelope.get("content-encoding")
            headers = envelope.get("headers")
            if (encoding is not None and encoding.lower() not in ("utf-8", "utf8")) or (
                headers and "compression" in headers
            ):
                self._skip("not_json")
                return
            body = envelope["body"]
            properties = envelope.get("properties")
            body_encoding = properties.get("body_encoding") if properties else None
            if body_encoding == "base64":
                body = a2b_base64(body)
            elif body_encoding is not None:
                self._skip("not_json")
                return
            payload = orjson.loads(body)
        except Exception:  # JSON, base64, shape: whatever a hostile message holds is counted
            self.errors += 1
            return
        if type(payload) is list:  # a buffered group, e.g. task.multi
            for event in payload:
                self._localize(event, here, out)
        else:
            self._localize(payload, here, out)

    def _localize(self, event: Any, here: float, out: list[dict[str, Any]]) -> None:
        if type(event) is not dict or type(event.get("type")) is not str:
            self.errors += 1
            return
        # The Lamport clock, as EventReceiver.event_from_message keeps app.clock.
        clock = self.clock
        if event["type"] == "task-sent":
            # clients never sync, so their clock value is not used
            sent = event["clock"] = (clock or 1) + CLIENT_CLOCK_SKEW
            self.clock = max(clock, sent) + 1
        else:
            theirs = event.get("clock")
            if theirs is None and "clock" not in event:
                self.clock = event["clock"] = clock + 1
            elif type(theirs) is int:
                self.clock = max(clock, theirs) + 1
        # adjust_timestamp(): a sender's local time made comparable to ours
        offset = event.get("utcoffset")
        if offset is not None:
            ts = event.get("timestamp")
            if ts is not None:
                try:  # noqa: SIM105 (contextlib.suppress costs more on this per-event path)
                    event["timestamp"] = ts - (offset - here) * 3600
                except (TypeError, ValueError, OverflowError):
                    pass  # the events source falls back to local_received
        event["local_received"] = self._now()
        out.append(event)
