"""Configuration: flags, CE_* variables, secrets from env/files, one-line errors at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import OPTIONS, build_parser, load_config
from exporter.config import Config
from exporter.config_checks import MIN_TOKEN_LENGTH, ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_celery_and_celery_exporter() -> None:
    cfg = load_config([], env={})
    assert cfg.broker_url == "redis://localhost:6379/0"
    assert cfg.port == 9808
    assert cfg.backend_url == cfg.broker_url  # Redis broker: backend defaults to it
    assert cfg.broker_kind == "redis"


def test_flag_beats_env_and_env_beats_default() -> None:
    env = {"CE_BROKER_URL": "amqp://guest:guest@rabbit//", "CE_PORT": "9900"}
    cfg = load_config(["--port", "9901"], env=env)
    assert cfg.broker_url == "amqp://guest:guest@rabbit//"
    assert cfg.port == 9901
    assert cfg.backend_url is None  # AMQP broker: no Redis backend unless given


def test_celery_exporter_flag_names_are_accepted() -> None:
    cfg = load_config(
        [
            "--broker-url=rediss://h:6380/1",
            "--broker-transport-option",
            "visibility_timeout=18000",
            "--broker-transport-option",
            "global_keyprefix=app1:",
            "--broker-ssl-option",
            "ssl_cert_reqs=required",
            "--accept-content",
            "json,msgpack",
            "--host",
            "127.0.0.1",
            "--port",
            "9808",
            "-Q",
            "a, b",
            "--buckets",
            "0.1,1,10",
            "--worker-timeout",
            "60",
            "--purge-offline-worker-metrics",
            "120",
            "--log-level",
            "debug",
            "--default-queue-name",
            "celery",
        ],
        env={"CE_LABEL_GRACE": "2.5"},
    )
    assert cfg.default_queue_name == "celery" and cfg.label_grace == 2.5
    assert cfg.broker_transport_options == {
        "visibility_timeout": 18000,
        "global_keyprefix": "app1:",
    }
    assert cfg.broker_ssl_options == {"ssl_cert_reqs": "required"}
    assert cfg.accept_content == ("json", "msgpack")
    assert cfg.queues == ("a", "b")
    assert cfg.buckets == (0.1, 1.0, 10.0)
    assert cfg.global_keyprefix == "app1:"


def test_multi_value_env_var() -> None:
    env = {"CE_BROKER_TRANSPORT_OPTION": "visibility_timeout=10 global_keyprefix=x:"}
    cfg = load_config([], env=env)
    assert cfg.broker_transport_options == {"visibility_timeout": 10, "global_keyprefix": "x:"}


def test_sentinel_url_is_a_redis_broker() -> None:
    cfg = load_config(
        ["--broker-url", "sentinel://h1:26379/0;sentinel://h2:26379/0"],
        env={},
    )
    assert cfg.broker_kind == "redis"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--broker-url", "kafka://x"], "unsupported broker URL scheme 'kafka'"),
        (["--result-backend", "db+postgresql://x/y"], "only a Redis result backend"),
        (["--poll-interval", "0"], "--poll-interval must be > 0"),
        (["--poll-interval", "soon"], "--poll-interval"),
        (["--port", "99999"], "not a TCP port"),
        (["--host", "no-such-host.invalid"], "does not resolve"),
        (["--buckets", "1,0.5"], "increasing"),
        (["--inspect-timeout", "30", "--poll-interval", "5"], "too long"),
        (["--log-format", "xml"], "text or json"),
        (["--accept-content", ","], "lists no content type"),
        (["--metrics-auth", "token"], "needs CE_METRICS_TOKENS"),
        (["--broker-transport-option", "novalue"], "not KEY=VALUE"),
        (["--events", "maybe"], "not a boolean"),
        (["--events-consumer", "kombu"], "--events-consumer must be auto or celery"),
        (["--api-max-concurrent", "0"], "--api-max-concurrent must be >= 1"),
        (["--label-grace", "-1"], "--label-grace must be 0 to 600"),
        (["--label-grace", "nan"], "--label-grace must be 0 to 600"),
        (["--default-queue-name", " "], "--default-queue-name must not be empty"),
    ],
)
def test_bad_settings_fail_with_one_clear_line(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(argv, env={})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_events_consumer_from_flag_or_env() -> None:
    assert load_config([], env={}).events_consumer == "auto"
    assert load_config([], env={"CE_EVENTS_CONSUMER": "Celery"}).events_consumer == "celery"
    assert load_config(["--events-consumer", "auto"], env={}).events_consumer == "auto"


def test_tokens_come_from_env_or_file_never_argv(tmp_path: Path) -> None:
    token_file = tmp_path / "ops"
    token_file.write_text("op-secret-0000001\n\nop-secret-0000002\n")
    env = {
        "CE_VIEWER_TOKENS": "viewer-000000001,viewer-000000002",
        "CE_OPERATOR_TOKENS_FILE": str(token_file),
    }
    cfg = load_config([], env=env)
    assert cfg.viewer_tokens == ("viewer-000000001", "viewer-000000002")
    assert cfg.operator_tokens == ("op-secret-0000001", "op-secret-0000002")
    assert "op-secret" not in repr(cfg)  # never printed with the config
    flags = {f for action in build_parser()._actions for f in action.option_strings}
    assert not any(f.endswith("-tokens") or f == "--token" for f in flags)


def test_missing_token_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read token file"):
        load_config(["--operator-token-file", str(tmp_path / "nope")], env={})


def test_every_option_is_documented_with_its_env_var() -> None:
    text = build_parser().format_help()
    for opt in OPTIONS:
        assert opt.env in text, opt.env
    # The README's configuration table lists every option too.
    readme = (ROOT / "README.md").read_text()
    for opt in OPTIONS:
        assert f"`{opt.flags[0]}`" in readme, f"README misses {opt.flags[0]}"


def test_every_config_field_has_an_option_or_is_a_secret() -> None:
    fields = set(Config.__dataclass_fields__)
    covered = {o.field for o in OPTIONS} | {"viewer_tokens", "operator_tokens", "metrics_tokens"}
    assert fields == covered


def test_cli_exits_2_with_one_line_on_bad_config() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--broker-url", "foo://x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unsupported broker URL scheme" in lines[0]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CE_VIEWER_TOKENS": "short"}, "viewer token #1 (CE_VIEWER_TOKENS or "),
        (
            {"CE_OPERATOR_TOKENS": "operator-token-0001,operator-tok\u00e9n-0002"},
            "operator token #2 (CE_OPERATOR_TOKENS or --operator-token-file) has a character "
            "that is not printable ASCII",
        ),
        ({"CE_METRICS_TOKENS": "metrics\x01token-00001"}, "metrics token #1"),
        ({"CE_VIEWER_TOKENS": "fifteen-chars-x"}, "has 15 characters; tokens need at least 16"),
    ],
)
def test_unusable_tokens_fail_at_start_without_showing_them(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config([], env=env)
    text = str(err.value)
    assert message in text
    assert "\n" not in text
    for value in env.values():
        for token in value.split(","):
            assert token not in text  # never echo a secret, even a bad one


def test_token_rules_apply_to_token_files_too(tmp_path: Path) -> None:
    path = tmp_path / "viewer"
    path.write_text("viewer-token-000001\nbad token with spaces\n")
    with pytest.raises(ConfigError, match=r"viewer token #2 .* not printable ASCII"):
        load_config(["--viewer-token-file", str(path)], env={})
    path.write_text("x" * MIN_TOKEN_LENGTH + "\n")
    assert load_config(["--viewer-token-file", str(path)], env={}).viewer_tokens == (
        "x" * MIN_TOKEN_LENGTH,
    )


def test_a_short_token_stops_the_cli_with_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.cli import main

    monkeypatch.setenv("CE_OPERATOR_TOKENS", "hunter2")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("celery-ops-exporter: error: operator token #1")
    assert "hunter2" not in err
