"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.exporter_process import ExporterProcess, exporters


@pytest.fixture
def run_exporter() -> Iterator[Callable[..., ExporterProcess]]:
    """run_exporter(broker_url, *args) -> the real daemon, serving; stopped after the test."""
    yield from exporters()
