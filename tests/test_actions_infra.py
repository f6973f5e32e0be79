"""Actions on infrastructure: `alertmanager.silence` against a real Alertmanager 0.25,
`systemd.restart` and `docker.restart` through stand-in tools first on PATH, and the Kubernetes
actions against an HTTP server speaking the API paths they call.

Kubernetes cannot run here. The stand-in API server checks what a real one would get: the
method, the path, the patch content type (strategic merge patch, as kubectl sends) and the body,
and answers with objects shaped like the API's; it does not check authorization or admission.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from receiver.actions import ACTIONS, ActionContext
from receiver.actions.alertmanager import expire_silence
from receiver.integrations import AlertmanagerSettings, Integrations, KubernetesSettings
from tests.support import free_port, wait_port
from tests.test_e2e_alertmanager import alertmanager_binary, http

LABELS = {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "web-1"}


def ctx(integrations: Integrations) -> ActionContext:
    context = {
        "alert": {"labels": LABELS, "annotations": {}, "status": "firing"},
        "params": {},
        "rule": {"name": "crashloop"},
        "playbook": {"name": "restart-web"},
        "execution": {"id": "e1", "url": "http://receiver/api/v1/executions/e1"},
        "steps": {},
    }
    return ActionContext(execution_id="e1", step_id="s", integrations=integrations, template_context=context)


async def run(action: str, with_: dict[str, Any], c: ActionContext, timeout_s: float = 10.0) -> Any:
    a = ACTIONS[action]
    return await a.run(a.Params.model_validate(with_), c, timeout_s=timeout_s)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager on a free port; its base URL."""
    port = free_port()
    cfg = tmp_path / "am.yml"
    cfg.write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    proc = subprocess.Popen(
        [
            alertmanager_binary(),
            f"--config.file={cfg}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_silence_is_created_for_the_alert_and_expired(alertmanager: str) -> None:
    """The silence matches the alert's labels exactly, links the execution, and is expired by
    expire_silence (as the engine does when the execution ends)."""
    am = AlertmanagerSettings(url=alertmanager)
    r = await run("alertmanager.silence", {"duration": "30m"}, ctx(Integrations(alertmanager=am)))
    assert r.ok, r.error
    ident = r.outputs["silence_id"]
    silence = http("GET", f"{alertmanager}/api/v2/silence/{ident}")
    assert silence["status"]["state"] == "active" and silence["createdBy"] == "receiver"
    assert {(m["name"], m["value"], m["isRegex"]) for m in silence["matchers"]} == {
        (k, v, False) for k, v in LABELS.items()
    }
    assert "http://receiver/api/v1/executions/e1" in silence["comment"]
    assert await expire_silence(am, ident) is None
    assert http("GET", f"{alertmanager}/api/v2/silence/{ident}")["status"]["state"] == "expired"


async def test_silence_on_chosen_labels_and_missing_label(alertmanager: str) -> None:
    """`labels` narrows the matchers; a label the alert lacks is an error naming it."""
    c = ctx(Integrations(alertmanager=AlertmanagerSettings(url=alertmanager)))
    r = await run("alertmanager.silence", {"labels": ["alertname", "namespace"]}, c)
    assert r.ok
    silence = http("GET", f"{alertmanager}/api/v2/silence/{r.outputs['silence_id']}")
    assert {m["name"] for m in silence["matchers"]} == {"alertname", "namespace"}
    r = await run("alertmanager.silence", {"labels": ["cluster"]}, c)
    assert not r.ok and r.error == "the alert has no label cluster"


async def test_silence_without_alertmanager_reachable() -> None:
    """An Alertmanager that does not answer fails the step saying so."""
    am = AlertmanagerSettings(url=f"http://127.0.0.1:{free_port()}")
    r = await run("alertmanager.silence", {}, ctx(Integrations(alertmanager=am)))
    assert not r.ok and (r.error or "").startswith("alertmanager:")


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-in `systemctl` and `docker` first on PATH: they log their argv and act on files."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    script = f"""#!/bin/sh
echo "$(basename "$0") $*" >> {log}
if [ "$1" = is-active ] || [ "$2" = is-active ]; then
  state=$(cat {tmp_path}/state 2>/dev/null || echo active); echo "$state"
  [ "$state" = active ]
fi
exit $(cat {tmp_path}/rc 2>/dev/null || echo 0)
"""
    for name in ("systemctl", "docker"):
        f = bin_dir / name
        f.write_text(script)
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path


def calls(tools: Path) -> list[str]:
    return (tools / "calls").read_text().splitlines()


async def test_systemd_restart_then_checks_the_unit(tools: Path) -> None:
    """systemctl restart, then is-active, each as argv; an inactive unit afterwards fails."""
    c = ctx(Integrations())
    r = await run("systemd.restart", {"unit": "nginx.service"}, c)
    assert r.ok and r.outputs == {"state": "active"}
    assert calls(tools) == ["systemctl restart -- nginx.service", "systemctl is-active -- nginx.service"]
    (tools / "state").write_text("failed")
    r = await run("systemd.restart", {"unit": "nginx.service", "user": True}, c)
    assert not r.ok and r.error == "unit nginx.service is failed after the restart"
    assert calls(tools)[-2] == "systemctl --user restart -- nginx.service"


async def test_systemd_refuses_option_looking_units_and_reports_restart_failure(tools: Path) -> None:
    """A unit name starting with '-' is refused by the parameters; a failing restart is the error."""
    with pytest.raises(ValueError, match="unit"):
        ACTIONS["systemd.restart"].Params.model_validate({"unit": "--now"})
    (tools / "rc").write_text("5")
    r = await run("systemd.restart", {"unit": "nginx"}, ctx(Integrations()))
    assert not r.ok and r.exit_code == 5 and len(calls(tools)) == 1


async def test_docker_restart(tools: Path) -> None:
    """docker restart CONTAINER, as argv."""
    r = await run("docker.restart", {"container": "web-1"}, ctx(Integrations()))
    assert r.ok and calls(tools) == ["docker restart -- web-1"]


class FakeKubernetes:
    """An HTTP server answering the Kubernetes API paths the actions call, recording requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.rollout_polls_until_done = 2
        self.url = ""

    def workload(self, kind: str, ns: str, name: str, done: bool) -> dict[str, Any]:
        status: dict[str, Any] = {"observedGeneration": 2 if done else 1, "replicas": 2}
        if kind == "DaemonSet":
            status.update(
                currentNumberScheduled=2,
                numberMisscheduled=0,
                numberReady=2,
                desiredNumberScheduled=2,
                updatedNumberScheduled=2 if done else 1,
                numberAvailable=2,
            )
        else:
            status.update(updatedReplicas=2 if done else 1, availableReplicas=2, readyReplicas=2)
        spec: dict[str, Any] = {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        }
        if kind != "DaemonSet":
            spec["replicas"] = 2
        if kind == "StatefulSet":
            spec["serviceName"] = name
        return {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": ns, "generation": 2},
            "spec": spec,
            "status": status,
        }

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "content_type": request.headers.get("Content-Type", ""),
                "authorization": request.headers.get("Authorization", ""),
                "body": json.loads(body) if body else None,
            }
        )
        parts = request.path.strip("/").split("/")
        if request.path.startswith("/api/v1/namespaces/") and parts[4] == "pods":
            if parts[5] == "missing":
                return web.json_response(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "message": 'pods "missing" not found',
                        "code": 404,
                    },
                    status=404,
                )
            return web.json_response(
                {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": parts[5], "namespace": parts[3]}}
            )
        kinds = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}
        ns, kind, name = parts[4], kinds[parts[5]], parts[6]
        if len(parts) > 7 and parts[7] == "scale":
            replicas = (self.requests[-1]["body"] or {}).get("spec", {}).get("replicas", 2)
            return web.json_response(
                {
                    "kind": "Scale",
                    "apiVersion": "autoscaling/v1",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"replicas": replicas},
                    "status": {"replicas": 2},
                }
            )
        polls = sum(1 for r in self.requests if r["method"] == "GET")
        return web.json_response(self.workload(kind, ns, name, polls >= self.rollout_polls_until_done))


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[FakeKubernetes, KubernetesSettings]]:
    fake = FakeKubernetes()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: test, user: {{token: test-token}}}}]
contexts: [{{name: test, context: {{cluster: test, user: test}}}}]
current-context: test
""")
    try:
        yield fake, KubernetesSettings(kubeconfig=str(kubeconfig))
    finally:
        await runner.cleanup()


async def test_rollout_restart_sends_kubectls_patch(kube: tuple[FakeKubernetes, KubernetesSettings]) -> None:
    """The same strategic merge patch as `kubectl rollout restart`: a restartedAt annotation on
    the pod template, to the workload's path, with the kubeconfig's token."""
    fake, settings = kube
    for kind, plural in (
        ("Deployment", "deployments"),
        ("StatefulSet", "statefulsets"),
        ("DaemonSet", "daemonsets"),
    ):
        r = await run(
            "kubernetes.rollout_restart",
            {"kind": kind, "namespace": "shop", "name": "web"},
            ctx(Integrations(kubernetes=settings)),
        )
        assert r.ok, r.error
        req = fake.requests[-1]
        assert (req["method"], req["path"]) == ("PATCH", f"/apis/apps/v1/namespaces/shop/{plural}/web")
        assert req["content_type"] == "application/strategic-merge-patch+json"
        assert req["authorization"] == "Bearer test-token"
        stamp = req["body"]["spec"]["template"]["metadata"]["annotations"][
            "kubectl.kubernetes.io/restartedAt"
        ]
        assert stamp == r.outputs["restarted_at"] and stamp.endswith("Z")


async def test_rollout_restart_waits_for_the_rollout(
    kube: tuple[FakeKubernetes, KubernetesSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With wait, the workload is read until its status says every replica is updated."""
    import receiver.actions.kubernetes as k

    monkeypatch.setattr(k, "ROLLOUT_POLL_S", 0.05)
    fake, settings = kube
    r = await run(
        "kubernetes.rollout_restart",
        {"namespace": "shop", "name": "web", "wait": True},
        ctx(Integrations(kubernetes=settings)),
    )
    assert r.ok and "rolled out" in r.stdout
    assert [q["method"] for q in fake.requests] == ["PATCH", "GET", "GET"]


async def test_delete_pod_and_scale(kube: tuple[FakeKubernetes, KubernetesSettings]) -> None:
    """delete_pod sends DELETE to the pod; a missing pod is the API's message; scale patches the
    scale subresource."""
    fake, settings = kube
    c = ctx(Integrations(kubernetes=settings))
    r = await run("kubernetes.delete_pod", {"namespace": "shop", "name": "web-1"}, c)
    assert r.ok and (fake.requests[-1]["method"], fake.requests[-1]["path"]) == (
        "DELETE",
        "/api/v1/namespaces/shop/pods/web-1",
    )
    r = await run("kubernetes.delete_pod", {"namespace": "shop", "name": "missing"}, c)
    assert not r.ok and r.error == 'delete pod shop/missing: HTTP 404 pods "missing" not found'
    r = await run("kubernetes.scale", {"namespace": "shop", "name": "web", "replicas": 5}, c)
    assert r.ok and r.outputs == {"replicas": 5}
    req = fake.requests[-1]
    assert (req["method"], req["path"], req["body"]) == (
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/web/scale",
        {"spec": {"replicas": 5}},
    )


async def test_kubernetes_without_credentials_says_so(tmp_path: Path) -> None:
    """Outside a cluster and without a kubeconfig, the step fails naming the credentials."""
    r = await run(
        "kubernetes.delete_pod",
        {"namespace": "shop", "name": "web-1"},
        ctx(Integrations(kubernetes=KubernetesSettings(kubeconfig=str(tmp_path / "none")))),
    )
    assert not r.ok and (r.error or "").startswith("kubernetes credentials:")
    r = await run("kubernetes.delete_pod", {"namespace": "shop", "name": "web-1"}, ctx(Integrations()))
    assert not r.ok and (r.error or "").startswith("kubernetes credentials:")
