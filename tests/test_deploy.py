"""deploy/ and the Dockerfile: the kustomize base and overlays render with kubectl and validate
against the Kubernetes schemas; the config inside the ConfigMaps passes `receiver check`; RBAC
grants exactly what the Kubernetes actions call; the Dockerfile follows its rules; the
PrometheusRule passes promtool; the Alertmanager wiring matches the receiver's path and auth.

The Prometheus Operator's kinds (ServiceMonitor, PrometheusRule, AlertmanagerConfig) have no
schema in kubernetes-validate; their fields that matter are checked here one by one."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from receiver.actions.kubernetes import RBAC
from receiver.metrics import Metrics
from tests.support import PROJECT

KUBERNETES_VERSION = "1.32"
TARGETS = ["base", "overlays/with-redis", "overlays/production"]
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"}


class _Loader(yaml.SafeLoader):
    """YAML 1.2 as kustomize writes it: a bare `=` (an AlertmanagerConfig matchType) is a string,
    not YAML 1.1's `value` tag."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def render(target: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: it renders deploy/ (kubectl kustomize)")
    out = subprocess.run(
        [kubectl, "kustomize", str(PROJECT / "deploy" / target)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.load_all(out.stdout, Loader=_Loader) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("target", TARGETS)
def test_manifests_render_and_validate(target: str) -> None:
    """Every object of the base and each overlay validates against the Kubernetes schemas."""
    docs = render(target)
    assert docs
    for doc in docs:
        if doc["kind"] in OPERATOR_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_deployment_is_locked_down() -> None:
    """2 replicas, probes on /-/ready and /-/healthy, requests and limits, non-root, no
    capabilities, read-only root, seccomp RuntimeDefault, a pinned image."""
    deployment = by_kind(render("overlays/production"), "Deployment")[0]
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(
        container["resources"]["limits"]
    )
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False
    image = container["image"]
    assert ":" in image and not image.endswith(":latest")
    assert spec["terminationGracePeriodSeconds"] > 25  # above the receiver's shutdown_grace


def test_rbac_grants_exactly_what_the_kubernetes_actions_call() -> None:
    """The Role's rules, flattened, are receiver.actions.kubernetes.RBAC: nothing more, nothing less."""
    role = by_kind(render("overlays/production"), "Role")[0]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == {k: set(v) for k, v in RBAC.items()}
    binding = by_kind(render("overlays/production"), "RoleBinding")[0]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "receiver", "namespace": "monitoring"}]


def write_configmaps(docs: list[dict[str, Any]], root: Path) -> Path:
    """The ConfigMaps' files laid out as the Deployment mounts them, with stand-in secrets."""
    deployment = by_kind(docs, "Deployment")[0]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    maps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    for mount in mounts:
        volume = volumes[mount["name"]]
        if "configMap" not in volume:
            continue
        data = maps[volume["configMap"]["name"]]["data"]
        target = root / mount["mountPath"].lstrip("/")
        if "subPath" in mount:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[mount["subPath"]])
        else:
            target.mkdir(parents=True, exist_ok=True)
            for name, text in data.items():
                (target / name).write_text(text)
    secrets = root / "etc/receiver/secrets"
    secrets.mkdir(parents=True)
    for name in ("webhook-token", "operator-token", "grafana-token"):
        (secrets / name).write_text("stand-in\n")
    (secrets / "oncall-urls").write_text("json://127.0.0.1:9/x\n")
    return root / "etc/receiver/receiver.yml"


@pytest.mark.parametrize("target", ["overlays/with-redis", "overlays/production"])
def test_configmaps_pass_receiver_check(target: str, tmp_path: Path) -> None:
    """The config, rules and playbooks as the pods see them pass `receiver check`."""
    config = write_configmaps(render(target), tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "receiver", "check", "--config", str(config)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "1 rule(s), 1 playbook(s)" in r.stdout


def test_deploy_playbook_is_the_shipped_one() -> None:
    """The playbook in the ConfigMap is the same file as playbooks/restart-deployment.yml."""
    shipped = (PROJECT / "playbooks/restart-deployment.yml").read_text()
    assert (PROJECT / "deploy/base/config/playbooks/restart-deployment.yml").read_text() == shipped


def test_dockerfile_rules() -> None:
    """Multi-stage on a pinned slim Python, a non-root numeric USER, a HEALTHCHECK, no build tools
    in the final stage, and `receiver serve` as the entry point."""
    lines = [ln.strip() for ln in (PROJECT / "Dockerfile").read_text().splitlines() if ln.strip()]
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert len(froms) >= 2
    for f in froms:
        image = f.split()[1]
        assert ":" in image and not image.endswith(":latest") and "slim" in image, f
    final = lines[lines.index(froms[-1]) :]
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    assert users and users[-1].isdigit() and int(users[-1]) != 0
    assert any(ln.upper().startswith("HEALTHCHECK ") for ln in final)
    assert not any(tool in ln for ln in final for tool in ("gcc", "build-essential", "pip install"))
    entry = next(ln for ln in final if ln.upper().startswith("ENTRYPOINT"))
    assert '"receiver", "serve"' in entry


def test_prometheus_rules_pass_promtool(tmp_path: Path) -> None:
    """The PrometheusRule's groups are valid Prometheus rules; its alerts cover webhook errors,
    failing executions, the queue backlog, open circuit breakers and refused reloads, and read
    only metrics the receiver exports."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian: apt-get install prometheus)")
    rule = by_kind(render("overlays/production"), "PrometheusRule")[0]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    names = {x["alert"] for g in rule["spec"]["groups"] for x in g["rules"]}
    assert {
        "ReceiverWebhookErrors",
        "ReceiverExecutionsFailing",
        "ReceiverQueueBacklog",
        "ReceiverCircuitBreakerOpen",
        "ReceiverConfigReloadFailed",
    } <= names
    # Every receiver_* series an alert reads is one the receiver exports.
    exported = {m.name for m in Metrics().registry.collect()}
    exported |= {f"{n}_{suffix}" for n in exported for suffix in ("total", "count", "sum", "bucket")}
    used = {
        m for g in rule["spec"]["groups"] for x in g["rules"] for m in re.findall(r"receiver_\w+", x["expr"])
    }
    assert used and used <= exported, used - exported
    monitor = by_kind(render("overlays/production"), "ServiceMonitor")[0]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def receiver_webhook_token_file() -> str:
    config = yaml.safe_load((PROJECT / "deploy/base/config/receiver.yml").read_text())
    return str(config["auth"]["webhook"]["bearer_token_file"])


def test_alertmanager_config_resource_matches_the_receiver() -> None:
    """The AlertmanagerConfig posts to the receiver Service's /webhook with send_resolved and the
    Bearer token from the Secret key the receiver reads its token from."""
    docs = render("overlays/production")
    amc = by_kind(docs, "AlertmanagerConfig")[0]
    hook = amc["spec"]["receivers"][0]["webhookConfigs"][0]
    url = urlsplit(hook["url"])
    service = by_kind(docs, "Service")[0]
    assert url.path == "/webhook" and url.port == service["spec"]["ports"][0]["port"]
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert hook["sendResolved"] is True
    credentials = hook["httpConfig"]["authorization"]["credentials"]
    secret_volume = next(
        v
        for v in by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "secrets"
    )
    assert credentials["name"] == secret_volume["secret"]["secretName"]
    assert credentials["key"] == Path(receiver_webhook_token_file()).name


def test_alertmanager_snippet_is_valid_and_matches(tmp_path: Path) -> None:
    """deploy/alertmanager/alertmanager.yml, merged under a root route, passes amtool; it posts to
    /webhook with send_resolved and an authorization credentials_file."""
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is not installed (Debian: apt-get install prometheus-alertmanager)")
    snippet = yaml.safe_load((PROJECT / "deploy/alertmanager/alertmanager.yml").read_text())
    hook = snippet["receivers"][0]["webhook_configs"][0]
    assert urlsplit(hook["url"]).path == "/webhook" and hook["send_resolved"] is True
    token = tmp_path / "token"
    token.write_text("t")
    hook["http_config"]["authorization"]["credentials_file"] = str(token)
    full = {
        "route": {"receiver": "default", **snippet["route"]},
        "receivers": [{"name": "default"}, *snippet["receivers"]],
    }
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(full))
    r = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
