"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.integration.core_helpers import ExporterProcess, exporters


@pytest.fixture
def run_exporter() -> Iterator[Callable[..., ExporterProcess]]:
    """run_exporter(broker_url, *args) -> the real daemon, serving; stopped after the test."""
    yield from exporters()
