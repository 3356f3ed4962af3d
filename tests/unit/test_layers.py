"""The import layers, read from the AST of every module under exporter/ (function-level and
TYPE_CHECKING imports included):

- only `exporter/celery_io/` imports celery or kombu;
- `exporter/api/` is imported by nothing outside it except `exporter/http.py`, the HTTP
  front that mounts its router and guards /metrics with its auth; every other layer
  (remediation, collectors, sources, the ledger...) sits below the API;
- the ledger (the `exporter/ledger/` package) imports
  nothing from sources, collectors or the API.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "exporter"
CELERY_IO = "exporter.celery_io"
API = "exporter.api"
# The only modules outside api/ that may import it: the HTTP front serving it.
API_IMPORTERS = frozenset({"exporter.http"})
LEDGER_MUST_NOT_IMPORT = ("exporter.sources", "exporter.collectors", "exporter.api")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, is_package: bool = False) -> Iterator[str]:
    """Every module name an import in `source` may load: `from a import b` gives a and a.b."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            yield origin
            yield from (f"{origin}.{alias.name}" for alias in node.names)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def modules() -> list[tuple[str, set[str]]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        out.append((name, set(imported(path.read_text(), name, path.name == "__init__.py"))))
    return out


def is_ledger(name: str) -> bool:
    """The ledger's modules: flat `exporter/ledger*.py` files or the `exporter/ledger/` package."""
    return name.startswith("exporter.ledger")


MODULES = modules()


def test_the_scan_sees_the_package() -> None:
    names = {name for name, _ in MODULES}
    assert {"exporter.http", "exporter.api.router", "exporter.celery_io"} <= names
    assert any(is_ledger(n) for n in names)
    assert any(
        within(i, "celery") for n, imports in MODULES if within(n, CELERY_IO) for i in imports
    )


def test_only_celery_io_imports_celery_or_kombu() -> None:
    offenders = sorted(
        f"{name} imports {i}"
        for name, imports in MODULES
        if not within(name, CELERY_IO)
        for i in imports
        if within(i, "celery") or within(i, "kombu")
    )
    assert offenders == []


def test_nothing_below_the_api_imports_it() -> None:
    offenders = sorted(
        f"{name} imports {i}"
        for name, imports in MODULES
        if not within(name, API) and name not in API_IMPORTERS
        for i in imports
        if within(i, API)
    )
    assert offenders == []
    assert any(within(i, API) for i in dict(MODULES)["exporter.http"])  # the rule is needed


def test_the_ledger_imports_no_source_collector_or_api() -> None:
    offenders = sorted(
        f"{name} imports {i}"
        for name, imports in MODULES
        if is_ledger(name)
        for i in imports
        if any(within(i, bad) for bad in LEDGER_MUST_NOT_IMPORT)
    )
    assert offenders == []


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import celery.app", "exporter.x", "celery.app"),
        ("from kombu import Queue", "exporter.x", "kombu"),
        ("def f():\n    from exporter import api", "exporter.x", "exporter.api"),
        ("from ..api.router import build_router", "exporter.ledger.core", "exporter.api.router"),
        ("from . import sources", "exporter.ledger", "exporter.ledger.sources"),
        ("if TYPE_CHECKING:\n    from exporter.sources.base import Boot", "m", "exporter.sources"),
    ],
)
def test_the_scan_finds_every_kind_of_import(source: str, module: str, expected: str) -> None:
    is_package = module == "exporter.ledger"
    assert any(within(i, expected) for i in imported(source, module, is_package))
