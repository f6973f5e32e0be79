"""What every execution does when it ends, and the config that drives it: silences a step made
are expired, the outcome is notified and annotated as `outcome:` says (retried, never changing
the outcome), and a playbook naming a notifier or integration the config lacks is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from receiver.config import load_config
from receiver.engine import Engine
from receiver.errors import ConfigErrors
from receiver.integrations import KubernetesSettings
from receiver.metrics import Metrics
from receiver.models import parse_payload
from receiver.states import ExecutionStatus
from receiver.store.base import Store
from tests.support import PROJECT, Recorder, alert, payload, write_config
from tests.test_actions_infra import FakeKubernetes, alertmanager, kube  # noqa: F401  (fixtures)
from tests.test_e2e_alertmanager import http

RULES = """
rules:
  - name: r
    matchers: ['alertname="A"']
    playbook: p
"""


async def run_once(config_path: Path, store: Store) -> tuple[Engine, str]:
    config = load_config(config_path)
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="t")
    await engine.ingest(parse_payload(payload(alert("A", host="web-1"))))
    claimed = await store.claim("w", 2)
    assert claimed is not None
    await engine.execute(claimed, "w")
    return engine, claimed.id


async def test_outcome_is_notified_and_annotated_with_retries(tmp_path: Path, store: Store) -> None:
    """With outcome: notify and annotate, a successful execution posts one notification (after a
    refused first attempt, retried) and one annotation tagged with its outcome; a delivery that
    keeps failing is recorded and counted, and the execution still succeeded."""
    playbook = 'name: p\nsteps:\n  - id: s\n    action: script\n    with: {command: ["true"]}\n'
    async with Recorder((500, {}), (200, {})) as hook, Recorder((500, {"message": "down"})) as grafana:
        settings = (
            f"notifiers:\n  oncall: {{urls: ['{hook.url.replace('http://', 'json://')}/n']}}\n"
            f"integrations: {{grafana: {{url: '{grafana.url}'}}}}\n"
            "outcome: {notify: [oncall], annotate: true, attempts: 2, backoff: 10ms}\n"
        )
        path = write_config(tmp_path, rules=RULES, playbooks={"p": playbook}, settings=settings)
        engine, ident = await run_once(path, store)
    done = await store.get(ident)
    assert done is not None and done.status is ExecutionStatus.SUCCEEDED
    assert len(hook.requests) == 2 and hook.requests[1]["body"]["type"] == "success"
    assert hook.requests[1]["body"]["title"] == "[SUCCEEDED] A · p"
    assert len(grafana.requests) == 2 and "outcome:succeeded" in grafana.requests[0]["body"]["tags"]
    events = [t.event for t in done.timeline]
    assert "outcome_notify_sent" in events and "outcome_annotate_failed" in events
    assert events[-1] == "succeeded"
    metrics = engine.metrics.render().decode()
    assert 'receiver_outcome_deliveries_total{kind="annotate",result="failed"} 1.0' in metrics


async def test_silence_lasts_while_the_execution_runs(
    tmp_path: Path,
    store: Store,
    alertmanager: str,  # noqa: F811
) -> None:
    """A silence created by a step is active while later steps run and expired once the
    execution ends, even when it failed."""
    playbook = f"""name: p
steps:
  - id: quiet
    action: alertmanager.silence
  - id: look
    action: http
    with: {{url: "{alertmanager}/api/v2/silences"}}
  - id: fail
    action: script
    with: {{command: ["false"]}}
"""
    settings = f"integrations: {{alertmanager: {{url: '{alertmanager}'}}}}\n"
    path = write_config(tmp_path, rules=RULES, playbooks={"p": playbook}, settings=settings)
    _, ident = await run_once(path, store)
    done = await store.get(ident)
    assert done is not None and done.status is ExecutionStatus.FAILED
    silence_id = done.steps[0].outputs["silence_id"]
    during = {s["id"]: s["status"]["state"] for s in json.loads(done.steps[1].stdout)}
    assert during[silence_id] == "active"
    assert http("GET", f"{alertmanager}/api/v2/silence/{silence_id}")["status"]["state"] == "expired"
    assert "silence_expired" in [t.event for t in done.timeline]


@pytest.mark.parametrize(
    ("playbook", "settings", "expected"),
    [
        ("  - id: s\n    action: notify\n    with: {to: [pager]}\n", "", "with.to: unknown notifier 'pager'"),
        (
            "  - id: s\n    action: grafana.annotate\n",
            "",
            "grafana.annotate needs integrations.grafana to be configured",
        ),
        (
            "  - id: s\n    action: alertmanager.silence\n",
            "",
            "alertmanager.silence needs integrations.alertmanager",
        ),
        (
            "  - id: s\n    action: script\n    with: {command: [x]}\n",
            "notifiers:\n  n: {urls: ['nosuch://x']}\n",
            "notifiers.n: URL 1 is not one Apprise supports",
        ),
        (
            "  - id: s\n    action: script\n    with: {command: [x]}\n",
            "notifiers:\n  n: {urls_file: missing-urls}\n",
            "notifiers.n: cannot read secret file",
        ),
        (
            "  - id: s\n    action: script\n    with: {command: [x]}\n",
            "outcome: {notify: [ghost], annotate: true}\n",
            "outcome.notify: unknown notifier 'ghost'",
        ),
        (
            "  - id: s\n    action: http\n    with: {url: ftp://x}\n",
            "",
            "with.url: String should match pattern",
        ),
        ("  - id: s\n    action: kubernetes.scale\n    with: {namespace: a, name: b}\n", "", "with.replicas"),
    ],
)
def test_references_and_parameters_are_checked_at_load(
    tmp_path: Path, playbook: str, settings: str, expected: str
) -> None:
    """A notifier or integration a playbook uses but the config lacks, a notifier URL Apprise
    cannot use, and bad action parameters are load-time errors, named."""
    path = write_config(
        tmp_path, rules=RULES, playbooks={"p": "name: p\nsteps:\n" + playbook}, settings=settings
    )
    with pytest.raises(ConfigErrors) as e:
        load_config(path)
    assert any(expected in str(err) for err in e.value.errors), [str(x) for x in e.value.errors]


def test_secret_urls_never_appear_in_load_errors(tmp_path: Path) -> None:
    """A notifier URL with a token that Apprise refuses is reported by position, not quoted."""
    urls = tmp_path / "urls"
    urls.write_text("nosuch://tok3n@host\n")
    playbook = "name: p\nsteps:\n  - id: s\n    action: script\n    with: {command: [x]}\n"
    path = write_config(
        tmp_path, rules=RULES, playbooks={"p": playbook}, settings="notifiers:\n  n: {urls_file: urls}\n"
    )
    with pytest.raises(ConfigErrors) as e:
        load_config(path)
    assert "tok3n" not in str(e.value) and "URL 1" in str(e.value)


async def test_shipped_restart_playbook_silences_restarts_annotates_and_notifies(
    tmp_path: Path,
    store: Store,
    alertmanager: str,  # noqa: F811
    kube: tuple[FakeKubernetes, KubernetesSettings],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shipped rule and playbook for KubeDeploymentReplicasMismatch, against a real
    Alertmanager, a stand-in Kubernetes API, Grafana and a webhook notifier: the alert is
    silenced while the Deployment is restarted, the restart is annotated, the run succeeds once
    the alert resolves, the silence is expired and the on-call notifier hears it succeeded."""
    import asyncio

    import receiver.actions.kubernetes as k

    monkeypatch.setattr(k, "ROLLOUT_POLL_S", 0.05)
    fake, kubernetes = kube
    async with Recorder((200, {"id": 1})) as grafana, Recorder((200, {})) as hook:
        path = tmp_path / "receiver.yml"
        path.write_text(
            f"rules: ['{PROJECT}/rules/*.yml']\nplaybooks: ['{PROJECT}/playbooks/*.yml']\n"
            f"integrations:\n  alertmanager: {{url: '{alertmanager}'}}\n  grafana: {{url: '{grafana.url}'}}\n"
            f"  kubernetes: {{kubeconfig: '{kubernetes.kubeconfig}'}}\n"
            f"notifiers: {{oncall: {{urls: ['{hook.url.replace('http://', 'json://')}/n']}}}}\n"
        )
        engine = Engine(config=load_config(path), store=store, metrics=Metrics(), consumer="t")
        firing = alert(
            "KubeDeploymentReplicasMismatch", namespace="shop", deployment="web", severity="warning"
        )
        report = await engine.ingest(parse_payload(payload(firing)))
        assert [a["playbook"] for a in report.accepted] == ["restart-deployment"]
        claimed = await store.claim("w", 2)
        assert claimed is not None
        run = asyncio.create_task(engine.execute(claimed, "w"))
        deadline = asyncio.get_running_loop().time() + 20

        async def at_cleared() -> bool:
            e = await store.get(claimed.id)
            return e is not None and any(
                t.step == "cleared" and t.event == "step_started" for t in e.timeline
            )

        while not await at_cleared():
            assert asyncio.get_running_loop().time() < deadline, await store.get(claimed.id)
            await asyncio.sleep(0.05)
        silences = http("GET", f"{alertmanager}/api/v2/silences")
        assert [s["status"]["state"] for s in silences] == ["active"]
        await engine.ingest(parse_payload(payload({**firing, "status": "resolved"})))
        assert await asyncio.wait_for(run, 10) is ExecutionStatus.SUCCEEDED
    done = await store.get(claimed.id)
    assert done is not None
    patch = fake.requests[0]
    assert (patch["method"], patch["path"]) == ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web")
    assert "restart" in grafana.requests[0]["body"]["tags"]
    assert http("GET", f"{alertmanager}/api/v2/silences")[0]["status"]["state"] == "expired"
    assert (
        hook.requests[0]["body"]["title"] == "[SUCCEEDED] KubeDeploymentReplicasMismatch · restart-deployment"
    )
