"""Total decoders for `--compat danihodovic`: the two readings celery-exporter makes of an event
that this exporter's own parse (`sources/events.parse_event`) does not: the host part of a
node name, and the exception class as celery-exporter names it. Never raise.
"""

from __future__ import annotations

import re
from typing import Any

from exporter.decode import clean

UNKNOWN_EXCEPTION = "UnknownException"  # celery-exporter's word for an unreadable exception
# A word right before "(" at the start: "ValueError('x')" -> ValueError. A dotted name
# ("pkg.Error('x')") does not match, as in celery-exporter: it reads UnknownException.
_EXCEPTION = re.compile(r"(\w{1,200})\(")


def host_part(node: Any) -> str | None:
    """`worker@host` -> `host`; a name without `@` is the host itself (Celery's nodesplit)."""
    text = clean.label(node, 500)
    if text is None:
        return None
    _, sep, host = text.partition("@")
    return (host or None) if sep else text


def exception_class(message: Any) -> str:
    """The class celery-exporter labels a failure with, from the exception's repr."""
    if message.__class__ is not str:
        return UNKNOWN_EXCEPTION
    match = _EXCEPTION.match(message[:300])
    return match.group(1) if match else UNKNOWN_EXCEPTION
