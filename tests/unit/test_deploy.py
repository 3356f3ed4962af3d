"""Deployment files: what can be validated on this machine is validated (YAML, promtool check
config, systemd-analyze verify/security, kustomize build, generated PrometheusRule), and the
files agree with each other and with the exporter's real flags and environment variables."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import OPTIONS, SECRETS, build_parser
from tests.support.promql_names import ROOT, load_module, rules_doc

DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"


def yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def known_env() -> set[str]:
    return (
        {env for opt in OPTIONS for env in opt.envs}
        | {env for _f, env, _flag in SECRETS}
        | {env + "_FILE" for _f, env, _flag in SECRETS}
    )


def test_every_yaml_file_parses() -> None:
    files = [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml"), *ROOT.glob("grafana/**/*.yml")]
    assert len(files) >= 10
    for path in files:
        assert yaml_docs(path), path


def test_promtool_check_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (make deps installs it)")
    config = str(DEPLOY / "prometheus" / "prometheus.yml")
    proc = subprocess.run([promtool, "check", "config", config], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scrape_job_is_the_rules_job() -> None:
    gen = load_module("deploy/prometheus/generate.py", "ops_rules_generate")
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert jobs == [gen.VARIABLES["job"][0]]
    monitor = yaml.safe_load((KUBE / "servicemonitor.yaml").read_text())
    relabel = monitor["spec"]["endpoints"][0]["relabelings"][0]
    assert relabel == {"targetLabel": "job", "replacement": gen.VARIABLES["job"][0]}


def test_prometheusrule_matches_the_rules_file() -> None:
    mod = load_module("deploy/kubernetes/prometheusrule.py", "ops_prometheusrule")
    assert mod.main(["--check"]) == 0, "run: python deploy/kubernetes/prometheusrule.py"
    rule = yaml.safe_load((KUBE / "prometheusrule.yaml").read_text())
    flat = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert flat == rules_doc()


def test_prometheusrule_check_notices_drift(tmp_path: Path) -> None:
    mod = load_module("deploy/kubernetes/prometheusrule.py", "ops_prometheusrule")
    out = tmp_path / "pr.yaml"
    out.write_text((KUBE / "prometheusrule.yaml").read_text().replace("0.144", "0.5"))
    assert mod.main(["--check", "-o", str(out)]) == 1


def test_kubernetes_objects_fit_together() -> None:
    objs = {}
    for name in ("deployment.yaml", "service.yaml", "servicemonitor.yaml"):
        doc = yaml.safe_load((KUBE / name).read_text())
        objs[doc["kind"]] = doc
    pod = objs["Deployment"]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    svc = objs["Service"]
    assert svc["spec"]["selector"].items() <= labels.items()
    monitor = objs["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    port_names = {p["name"] for p in container["ports"]}
    assert svc["spec"]["ports"][0]["targetPort"] in port_names
    assert monitor["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] and not sec["allowPrivilegeEscalation"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"]
    for env in container["env"]:
        assert env["name"] in known_env(), env["name"]
        # Secrets come from a Secret or a mounted file, never a literal in the manifest.
        if "TOKENS" in env["name"]:
            assert env["name"].endswith("_FILE")
    kustom = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    for res in kustom["resources"]:
        assert (KUBE / res).exists(), res


def test_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize build not run")
    proc = subprocess.run([kubectl, "kustomize", str(KUBE)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(proc.stdout) if d]
    assert sorted(kinds) == ["Deployment", "PrometheusRule", "Service", "ServiceMonitor"]


def _unit_text() -> str:
    return (DEPLOY / "systemd" / "celery-ops-exporter.service").read_text()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify insists ExecStart exists: point the install prefix at a stand-in executable.
    prefix = tmp_path / "opt"
    (prefix / "bin").mkdir(parents=True)
    exe = prefix / "bin" / "celery-ops-exporter"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = tmp_path / "celery-ops-exporter.service"
    unit.write_text(_unit_text().replace("/opt/celery-ops-exporter", str(prefix)))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sec = subprocess.run([analyze, "security", "--offline=yes", str(unit)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", sec.stdout)
    assert level, sec.stdout + sec.stderr
    assert float(level.group(1)) <= 2.0, sec.stdout


def test_systemd_unit_keeps_tokens_out_of_argv_and_env() -> None:
    text = _unit_text()
    assert "LoadCredential=metrics.tokens:" in text
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M)
    assert exec_start and "token" not in exec_start.group(1).lower()
    for name in re.findall(r"^Environment=(\w+)=", text, re.M):
        assert name in known_env() or name == "PYTHONUNBUFFERED", name
        if "TOKENS" in name:
            assert name.endswith("_FILE")
    env_file = (DEPLOY / "systemd" / "celery-ops-exporter.env").read_text()
    for name in re.findall(r"^#?\s*(CE_\w+)=", env_file, re.M):
        assert name in known_env(), name
        assert "TOKEN" not in name


def test_compose_stack() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "worker", "exporter", "prometheus", "grafana"} <= set(services)
    for svc in services.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (DEPLOY / source).resolve().exists(), source
    # The exporter's command line must be flags the exporter really has.
    build_parser().parse_args(services["exporter"]["command"])
    dash = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/celery.yml").read_text())
    mounts = "\n".join(services["grafana"]["volumes"])
    assert dash["providers"][0]["options"]["path"] in mounts
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    target = prom["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target.split(":")[0] in services


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", text, re.M)
    assert "/-/healthy" in text and "EXPOSE 9808" in text
    assert 'ENTRYPOINT ["celery-ops-exporter"]' in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'celery-ops-exporter = "exporter.cli:main"' in pyproject


def test_alertmanager_routes_use_real_alerts_and_receivers() -> None:
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    receivers = {r["name"] for r in config["receivers"]}
    routes = [config["route"], *config["route"]["routes"]]
    assert {r["receiver"] for r in routes} <= receivers
    alerts = {r["alert"] for r in rules_doc() if "alert" in r}
    severities = {r["labels"]["severity"] for r in rules_doc() if "alert" in r}
    routed = {m.split('"')[1] for r in config["route"]["routes"] for m in r["matchers"]
              if m.startswith("severity=")}  # fmt: skip
    assert severities <= routed
    for inhibit in config["inhibit_rules"]:
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            pattern = matcher.split('"')[1]
            assert any(re.fullmatch(pattern, a) for a in alerts), pattern


def test_alertmanager_config_with_amtool() -> None:
    # amtool ships in Debian's prometheus-alertmanager; AMTOOL may point at an extracted copy.
    amtool = os.environ.get("AMTOOL") or shutil.which("amtool")
    if amtool is None:
        pytest.skip(
            "amtool is not installed (prometheus-alertmanager): routes checked in YAML only"
        )
    config = str(DEPLOY / "alertmanager" / "alertmanager.yml")
    check = subprocess.run([amtool, "check-config", config], capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    for severity, receiver in (("critical", "pager"), ("warning", "chat"), ("info", "blackhole")):
        route = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={config}",
             "alertname=CeleryQueueNoConsumers", f"severity={severity}", "job=celery"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert route.stdout.strip() == receiver, route.stdout + route.stderr
