"""Fuzz the API from its own OpenAPI schema (schemathesis, in-process ASGI, bounded examples):
no 5xx anywhere, responses match the schema, and every error is JSON with a `message`."""

from __future__ import annotations

from typing import Any

import fakeredis
import schemathesis
from celery import Celery
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from exporter.beat.model import BeatEntry, Every
from exporter.beat.source import BeatSource
from exporter.celery_io import CeleryIO
from tests.support.api import (
    HEAD_O,
    T0,
    busy_snapshot,
    failure,
    make_app,
    make_config,
    new_state,
    success,
)
from tests.support.beat import ScriptedReader


def _app() -> Any:
    config = make_config()
    state = new_state(config)
    state.set_snapshot(busy_snapshot(T0))
    state.ledger.apply_many([success("s1"), failure("f1"), failure("f2", exc="Odd")])
    beat = ScriptedReader()  # /api/periodic with rows: one missed, one due later
    beat.entries = [BeatEntry("ping", "tests.ping", Every(60.0), next_due=T0 - 600),
                    BeatEntry("later", "tests.later", Every(60.0), next_due=T0 + 30)]  # fmt: skip
    BeatSource(state, beat).run()
    io = CeleryIO(config, app=Celery("fuzz", broker="memory://", set_as_current=False))
    return make_app(state, io, fakeredis.FakeRedis())


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_fuzz(case: Any) -> None:
    response = case.call(headers=HEAD_O)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("message"), str) and body["message"], body
    # Unknown query parameters are ignored (as by most HTTP APIs), so the "schema-violating
    # request accepted" check does not apply; schema conformance and "valid data accepted" do.
    case.validate_response(response, headers=HEAD_O, excluded_checks=[negative_data_rejection])
