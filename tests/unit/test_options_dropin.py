"""danihodovic/celery-exporter's 18 options, each as a flag and as its `CE_*` variable, with
its effect; click's parsing (repeatable flags, whitespace-split variables); one line and exit 2
for every kind of bad value; /health; the naming options on every series."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import cli
from exporter.celery_io import make_app
from exporter.clock import FakeClock
from exporter.collectors import build_registry
from exporter.config import Config
from exporter.config_checks import ConfigError
from exporter.http import create_app
from exporter.naming import RESERVED_LABELS
from exporter.outage import Backoff
from exporter.poller import Poller
from exporter.state import State
from exporter.taskdata import TaskUpdate
from tests.support.cluster import FakeReader
from tests.support.common import wait_for

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"

# The reference's options (src/cli.py of danihodovic/celery-exporter).
REFERENCE_OPTIONS = (
    "--broker-url", "--broker-transport-option", "--broker-ssl-option", "--accept-content",
    "--retry-interval", "--host", "--port", "--buckets", "--queue-wait-buckets", "--log-level",
    "--worker-timeout", "--purge-offline-worker-metrics", "--generic-hostname-task-sent-metric",
    "--generic-hostname-worker-task-metric", "--queues", "--metric-prefix",
    "--default-queue-name", "--static-label",
)  # fmt: skip


def env_name(flag: str) -> str:
    return "CE_" + flag[2:].replace("-", "_").upper()


# --- effects: each takes the Config parsed from the flag or the variable ----------------------


def scrape(cfg: Config, updates: tuple[TaskUpdate, ...] = ()) -> str:
    clock = FakeClock()
    state = State(cfg, clock)
    reader = FakeReader()
    reader.add_worker("w1@host1", queues=("celery",))
    Poller(state, reader).poll()
    for update in updates:
        state.ledger.apply(update)
    return generate_latest(build_registry(state)).decode()


def one_task(now: float = 1_700_000_000.0) -> tuple[TaskUpdate, ...]:
    return (
        TaskUpdate("t1", "SENT", "events", timestamp=now - 10, name="app.add", queue="celery"),
        TaskUpdate("t1", "RECEIVED", "events", timestamp=now - 9, worker="w1@host1"),
        TaskUpdate("t1", "STARTED", "events", timestamp=now - 7, worker="w1@host1"),
        TaskUpdate("t1", "SUCCESS", "events", timestamp=now - 5, runtime=2.0),
    )


def les(text: str, family: str) -> list[str]:
    return sorted(set(re.findall(rf'^{family}_bucket{{.*le="([^"]+)"', text, re.M)), key=float)


def conf(cfg: Config) -> Any:
    return make_app(cfg).conf


def worker_up_after(cfg: Config, silent_for: float) -> str:
    """The worker_up lines after the only worker stayed silent for `silent_for` seconds."""
    clock = FakeClock()
    state = State(cfg, clock)
    reader = FakeReader()
    reader.add_worker("w1@host1")
    poller = Poller(state, reader)
    poller.poll()
    reader.remove_worker("w1@host1")
    clock.advance(silent_for)
    poller.poll()
    text = generate_latest(build_registry(state)).decode()
    return "\n".join(line for line in text.splitlines() if line.startswith("celery_worker_up{"))


def log_level_effect(cfg: Config) -> int:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        cli.setup_logging(cfg)
        return root.level
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def bound_address(cfg: Config) -> tuple[str, int]:
    from exporter.daemon import Daemon

    daemon = Daemon(cfg)
    try:
        daemon.bind()
    except ConfigError:  # the default port is taken on this machine: not our address either
        return ("", 0)
    try:
        sock = daemon._sockets[0][0]
        return sock.getsockname()[:2]
    finally:
        for sock, _m, _a in daemon._sockets:
            sock.close()


def first_reconnect_log(cfg: Config) -> str:
    """The daemon's event consumer against a closed port: its first outage line."""
    from exporter.celery_io import CeleryIO
    from exporter.sources import build_sources

    state = State(cfg.replace(broker_url=f"redis://127.0.0.1:{free_port()}/0"), FakeClock())
    stream = next(s.stream for s in build_sources(state, CeleryIO(state.config))
                  if hasattr(s, "stream"))  # fmt: skip
    lines: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("exporter")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    stop = threading.Event()
    thread = threading.Thread(target=stream.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: any("retrying in" in x for x in lines), 20, what="a reconnect")
    finally:
        stop.set()
        thread.join(10)
        logger.removeHandler(handler)
        logger.setLevel(saved)
    return next(x for x in lines if "retrying in" in x)


def free_port() -> int:
    from tests.support.common import free_port as fp

    return fp()


PORT = free_port()

# flag, argv values after the flag (None: a switch), env value, effect check.
Case = tuple[str, list[str] | None, str, Callable[[Config], None]]


def _check(cond: bool, what: str) -> None:
    assert cond, what


CASES: list[Case] = [
    ("--broker-url", ["amqp://u:p@rabbit:5673//"], "amqp://u:p@rabbit:5673//",
     lambda c: _check(conf(c).broker_url == "amqp://u:p@rabbit:5673//"
                      and c.broker_kind == "amqp", "broker")),
    # Repeated flag / whitespace-separated variable; commas stay inside one value.
    ("--broker-transport-option", ["priority_steps=[0,3,6,9]", "visibility_timeout=18000"],
     "priority_steps=[0,3,6,9]  visibility_timeout=18000",
     lambda c: _check(conf(c).broker_transport_options
                      == {"priority_steps": [0, 3, 6, 9], "visibility_timeout": 18000}, "bto")),
    ("--broker-ssl-option", ["ssl_cert_reqs=required", "ca_certs=/etc/ca.pem"],
     "ssl_cert_reqs=required ca_certs=/etc/ca.pem",
     lambda c: _check(conf(c).broker_use_ssl
                      == {"ssl_cert_reqs": "required", "ca_certs": "/etc/ca.pem"}, "ssl")),
    # pickle is accepted (with a warning) but never given to Celery as acceptable.
    ("--accept-content", ["json,pickle,msgpack"], "json,pickle,msgpack",
     lambda c: _check(list(conf(c).accept_content) == ["json", "msgpack"]
                      and any("pickle is never decoded" in w for w in cli.start_warnings(c, {})),
                      "accept")),
    ("--retry-interval", ["2.5"], "2.5",
     lambda c: _check([Backoff.paced(c.retry_interval).next() for _ in range(3)] == [2.5] * 3
                      and "retrying in 2.5s" in first_reconnect_log(c), "retry")),
    ("--host", ["127.0.0.1"], "127.0.0.1",
     lambda c: _check(bound_address(c.replace(port=free_port()))[0] == "127.0.0.1", "host")),
    ("--port", [str(PORT)], str(PORT),
     lambda c: _check(bound_address(c.replace(host="127.0.0.1"))[1] == PORT, "port")),
    ("--buckets", ["0.5,1,5,inf"], "0.5,1,5,inf",
     lambda c: _check(les(scrape(c, one_task()), "celery_task_runtime_seconds")
                      == ["0.5", "1.0", "5.0", "+Inf"], "buckets")),
    ("--queue-wait-buckets", ["2,4"], "2,4",
     lambda c: _check(les(scrape(c, one_task()), "celery_task_queue_wait_seconds")
                      == ["2.0", "4.0", "+Inf"], "wait buckets")),
    ("--log-level", ["TRACE"], "trace",
     lambda c: _check(log_level_effect(c) == logging.DEBUG, "level")),
    ("--worker-timeout", ["20"], "20",
     lambda c: _check(worker_up_after(c, 25).endswith(" 0.0")
                      and worker_up_after(c, 15).endswith(" 1.0"), "timeout")),
    ("--purge-offline-worker-metrics", ["60"], "60",
     lambda c: _check(worker_up_after(c.replace(worker_timeout=10), 65) == ""
                      and worker_up_after(c.replace(worker_timeout=10), 55) != "", "purge")),
    ("--generic-hostname-task-sent-metric", None, "true",
     lambda c: _check('hostname="generic"' in _line(scrape(c, one_task()), "celery_task_sent_")
                      and 'hostname="generic"' not in _line(scrape(c, one_task()),
                                                            "celery_task_started_"), "sent")),
    ("--generic-hostname-worker-task-metric", None, "1",
     lambda c: _check('hostname="generic"' in _line(scrape(c, one_task()), "celery_task_started_")
                      and 'hostname="generic"' not in _line(scrape(c, one_task()),
                                                            "celery_task_sent_"), "worker")),
    ("--queues", ["reports,mail"], "reports,mail",
     lambda c: _check('celery_queue_length{queue_name="reports"} 0.0' in scrape(c)
                      and 'queue_name="mail"' in scrape(c), "queues")),
    ("--metric-prefix", ["myapp_"], "myapp_",
     lambda c: _check(_names(scrape(c, one_task())) and all(
         n.startswith("myapp_") for n in _names(scrape(c, one_task()))), "prefix")),
    # Parsing only: its meaning (the queue label of tasks whose queue is unknown) belongs to
    # the ledger's attribution, tested there.
    ("--default-queue-name", ["tasks"], "tasks",
     lambda c: _check(c.default_queue_name == "tasks", "default queue")),
    ("--static-label", ["cluster=eu1", "shard=01"], "cluster=eu1 shard=01",
     lambda c: _check(_every_sample_has(scrape(c, one_task()), {"cluster": "eu1", "shard": "01"}),
                      "static")),
]  # fmt: skip

# Options whose effect needs --task-worker-label (the only place a task counter has hostname).
NEEDS = {
    "--generic-hostname-task-sent-metric": {"task_worker_label": True},
    "--generic-hostname-worker-task-metric": {"task_worker_label": True},
}


def _line(text: str, prefix: str) -> str:
    return "\n".join(x for x in text.splitlines() if x.startswith(prefix))


def _names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def _every_sample_has(text: str, labels: dict[str, str]) -> bool:
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    return bool(samples) and all(labels.items() <= s.labels.items() for s in samples)


def test_cases_cover_every_reference_option() -> None:
    assert sorted(c[0] for c in CASES) == sorted(REFERENCE_OPTIONS)
    flags = {f for opt in cli.OPTIONS for f in opt.flags}
    assert set(REFERENCE_OPTIONS) <= flags
    assert "-Q" in flags


@pytest.mark.parametrize("how", ["flag", "env"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_option_has_its_effect(case: Case, how: str) -> None:
    flag, values, env_value, check = case
    if how == "flag":
        argv = [flag] if values is None else [a for v in values for a in (flag, v)]
        cfg = cli.load_config(argv, env={})
    else:
        cfg = cli.load_config([], env={env_name(flag): env_value})
    assert cfg != Config(), f"{flag} ({how}) changed nothing"
    check(cfg.replace(**NEEDS.get(flag, {})))


def test_effects_are_not_the_defaults() -> None:
    """Each check fails on the default configuration, so the tests above prove the option."""
    for flag, _values, _env, check in CASES:
        with pytest.raises(AssertionError):
            check(Config().replace(**NEEDS.get(flag, {})))


def test_short_queue_flag_and_alias_env() -> None:
    assert cli.load_config(["-Q", "a,b"], env={}).queues == ("a", "b")
    both = cli.load_config([], env={"CE_WAIT_BUCKETS": "1,2"})
    assert both.wait_buckets == (1.0, 2.0)
    flag = cli.load_config(["--wait-buckets", "3"], env={"CE_QUEUE_WAIT_BUCKETS": "1,2"})
    assert flag.wait_buckets == (3.0,)  # a flag beats either variable


def test_an_empty_variable_is_unset_as_in_click() -> None:
    env = {"CE_PORT": "", "CE_STATIC_LABEL": "", "CE_METRIC_PREFIX": "", "CE_BUCKETS": ""}
    assert cli.load_config([], env=env) == Config()


def test_log_levels_of_loguru() -> None:
    for given, level in (("TRACE", "DEBUG"), ("success", "INFO"), ("warning", "WARNING")):
        assert cli.load_config(["--log-level", given], env={}).log_level == level


def test_unknown_ce_variables_get_one_warning() -> None:
    env = {"CE_PORT": "9808", "CE_BORKER_URL": "x", "CE_METRICS_TOKENS": "t" * 16, "CE_ZZ": "1"}
    warnings = cli.start_warnings(cli.load_config([], env=env), env)
    assert warnings == ["ignoring unknown environment variables: CE_BORKER_URL, CE_ZZ"]
    assert cli.start_warnings(Config(), {"CE_PORT": "1"}) == []


BAD = [
    (["--bogus"], "unrecognized arguments"),
    (["--port"], "expected one argument"),
    (["--port", "http"], "--port"),
    (["--retry-interval", "soon"], "--retry-interval"),
    (["--retry-interval", "-1"], "--retry-interval must be >= 0"),
    (["--worker-timeout", "-5"], "--worker-timeout must be >= 0"),
    (["--buckets", "1,abc"], "--buckets"),
    (["--queue-wait-buckets", "5,1"], "--wait-buckets must be increasing"),
    (["--buckets", "nan"], "nan is not a bucket"),
    (["--broker-transport-option", "novalue"], "not KEY=VALUE"),
    (["--static-label", "=x"], "not KEY=VALUE"),
    (["--static-label", "1st=x"], "not a label name"),
    (["--static-label", "queue_name=x"], "clashes with a label"),
    (["--metric-prefix", "my-app_"], "not a metric name prefix"),
    (["--log-level", "LOUD"], "not a log level"),
    (["--broker-url", "redis://127.0.0.1:notaport/0"], "the port is not a number"),
    (["--broker-url", "redis://u:hunter2@h:99999999/0"], "the port is not a number"),
    (["--broker-url", "kafka://x"], "unsupported broker URL scheme"),
    (["--generic-hostname-task-sent-metric", "yes"], "unrecognized arguments: yes"),
    (["--accept-content", ""], "lists no content type"),
    (["--broker-url", "redis://[::1"], "is not a URL"),
]
# Values only Celery/kombu reject, found when the daemon is built: one line all the same.
BAD_LATE = [
    ("redis://:hunter2@127.0.0.1:6379/notadb", "invalid literal for int()"),
    ("rediss://:hunter2@127.0.0.1:1/0?ssl_cert_reqs=bogus", "KeyError"),
]
BAD_ENV = [
    ({"CE_GENERIC_HOSTNAME_WORKER_TASK_METRIC": "maybe"}, "not a boolean"),
    ({"CE_STATIC_LABEL": "cluster=eu1 oops"}, "CE_STATIC_LABEL: 'oops' is not KEY=VALUE"),
    ({"CE_PORT": "nine"}, "CE_PORT"),
    ({"CE_QUEUE_WAIT_BUCKETS": "x"}, "CE_QUEUE_WAIT_BUCKETS"),
]


def run_main(argv: list[str], env: dict[str, str], capsys: Any, monkeypatch: Any) -> str:
    for key in [k for k in __import__("os").environ if k.startswith("CE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    root = logging.getLogger()  # main() sets logging up when the config is valid: undo it after
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a) for a, _m in BAD])
def test_bad_flag_value_is_one_line_exit_2(
    argv: list[str], message: str, capsys: Any, monkeypatch: Any
) -> None:
    err = run_main(argv, {}, capsys, monkeypatch)
    assert len(err.splitlines()) == 1 and message in err, err
    assert "hunter2" not in err


@pytest.mark.parametrize(("env", "message"), BAD_ENV, ids=[next(iter(e)) for e, _m in BAD_ENV])
def test_bad_env_value_is_one_line_exit_2(
    env: dict[str, str], message: str, capsys: Any, monkeypatch: Any
) -> None:
    err = run_main([], env, capsys, monkeypatch)
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize(("url", "message"), BAD_LATE, ids=[u for u, _m in BAD_LATE])
def test_value_kombu_rejects_is_one_line_exit_2(
    url: str, message: str, capsys: Any, monkeypatch: Any
) -> None:
    err = run_main(["--broker-url", url, "--host", "127.0.0.1", "--port", str(free_port())], {},
                   capsys, monkeypatch)  # fmt: skip
    assert len(err.splitlines()) == 1 and message in err, err
    assert "cannot start with this configuration" in err and "hunter2" not in err


def test_malformed_url_in_a_real_process_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--broker-url", "redis://127.0.0.1:notaport/0"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


# --- /health ------------------------------------------------------------------------------


def test_health_answers_like_the_reference_from_memory() -> None:
    state = State(Config(broker_url="redis://:s3cret@broker:6379/0"), FakeClock())
    client = TestClient(create_app(state, api=False))
    first = client.get("/health")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/html")
    reader = FakeReader()
    Poller(state, reader).poll()
    ok = client.get("/health")
    assert ok.text == "Connected to the broker redis://:**@broker:6379/0"
    reader.down = True
    Poller(state, reader).poll()
    down = client.get("/health")
    # Still serving: 200 (the broker outage is in celery_exporter_up, not a restart reason).
    assert down.status_code == 200 and "did not reach the broker" in down.text
    assert "s3cret" not in first.text + ok.text + down.text


# --- naming options on every series ---------------------------------------------------------


def golden_families(path: Path) -> Iterator[Any]:
    yield from text_string_to_metric_families(path.read_text())


def test_prefix_and_static_labels_reach_every_series_of_the_golden() -> None:
    plain = {f.name: f for f in golden_families(GOLDEN / "task_sources.prom")}
    named = {f.name: f for f in golden_families(GOLDEN / "options" / "prefix_static.prom")}
    assert {n.replace("myapp_", "celery_", 1) for n in named} == set(plain)
    samples = [s for f in named.values() for s in f.samples]
    assert len(samples) >= len([s for f in plain.values() for s in f.samples])
    for sample in samples:
        assert sample.name.startswith("myapp_"), sample
        assert sample.labels["cluster"] == "eu1" and sample.labels["shard"] == "01", sample
        if re.fullmatch(
            r"myapp_task_(sent|received|started|succeeded|failed|retried|revoked|"
            r"rejected)_total",
            sample.name,
        ):
            assert sample.labels.get("hostname") == "generic", sample


def test_reserved_labels_cover_every_label_the_exporter_sets() -> None:
    used = {
        label
        for path in GOLDEN.glob("*.prom")
        for family in golden_families(path)
        for sample in family.samples
        for label in sample.labels
    }
    assert used <= RESERVED_LABELS, used - RESERVED_LABELS
