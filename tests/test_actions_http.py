"""The actions that speak HTTP, each against a real server on loopback that records what it got:
`http`, `grafana.annotate` (a Grafana stand-in), and `notify` through Apprise to a JSON webhook
and to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from receiver.actions import ACTIONS, ActionContext
from receiver.integrations import GrafanaSettings, Integrations, NotifierSettings
from tests.support import Recorder, free_port

CONTEXT: dict[str, Any] = {
    "alert": {
        "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "web-1"},
        "annotations": {"summary": "web-1 restarts every minute"},
        "status": "firing",
    },
    "params": {},
    "rule": {"name": "crashloop"},
    "playbook": {"name": "restart-web"},
    "execution": {"id": "e1", "url": "http://receiver/api/v1/executions/e1", "started_at": time.time() - 42},
    "steps": {"restart": {"status": "succeeded", "error": None}},
}


def ctx(integrations: Integrations | None = None, **execution: Any) -> ActionContext:
    context = {**CONTEXT, "execution": {**CONTEXT["execution"], **execution}}
    return ActionContext(
        execution_id="e1", step_id="s", integrations=integrations or Integrations(), template_context=context
    )


async def run(action: str, with_: dict[str, Any], c: ActionContext, timeout_s: float = 5.0) -> Any:
    a = ACTIONS[action]
    return await a.run(a.Params.model_validate(with_), c, timeout_s=timeout_s)


async def test_http_posts_json_with_a_token_from_a_file(tmp_path: Path) -> None:
    """A POST carries the JSON body and the bearer token read from its file; the status and the
    body become outputs; the token appears nowhere in the result."""
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    async with Recorder((201, {"id": 7})) as rec:
        r = await run(
            "http",
            {
                "url": f"{rec.url}/hooks/restart?x=1",
                "method": "POST",
                "json": {"pod": "web-1"},
                "bearer_token_file": str(token),
                "headers": {"X-Trace": "t"},
            },
            ctx(),
        )
    assert r.ok and r.outputs == {"status": 201} and '"id": 7' in r.stdout
    got = rec.requests[0]
    assert (got["method"], got["path"], got["query"], got["body"]) == (
        "POST",
        "/hooks/restart",
        {"x": "1"},
        {"pod": "web-1"},
    )
    assert got["headers"]["Authorization"] == "Bearer s3cret" and got["headers"]["X-Trace"] == "t"
    assert "s3cret" not in repr(r)


async def test_http_unexpected_status_fails_naming_it_without_the_query(tmp_path: Path) -> None:
    """A status outside `expect` fails the step; the error names status and URL, not its query
    (which may hold a key). Basic auth takes the password from a file."""
    pw = tmp_path / "pw"
    pw.write_text("hunter2")
    async with Recorder((503, {"error": "busy"})) as rec:
        r = await run(
            "http",
            {"url": f"{rec.url}/api?key=abc", "basic_auth": {"username": "ops", "password_file": str(pw)}},
            ctx(),
        )
    assert not r.ok and r.error == f"HTTP 503 from GET {rec.url}/api" and r.outputs == {"status": 503}
    assert rec.requests[0]["headers"]["Authorization"].startswith("Basic ")
    async with Recorder((404, {})) as rec:
        r = await run("http", {"url": f"{rec.url}/x", "expect": [404]}, ctx())
    assert r.ok


async def test_http_body_is_capped_and_a_missing_secret_is_named(tmp_path: Path) -> None:
    """A large body is cut at the output limit; a missing token file fails before any request."""
    async with Recorder((200, "x" * 50_000)) as rec:
        c = ActionContext(execution_id="e", step_id="s", output_limit=1000)
        r = await run("http", {"url": rec.url}, c)
        assert r.ok and len(r.stdout) < 1100 and r.stdout.endswith("[... body cut at the output limit]")
        r = await run("http", {"url": rec.url, "bearer_token_file": str(tmp_path / "nope")}, ctx())
    assert not r.ok and "cannot read secret file" in (r.error or "") and len(rec.requests) == 1


async def test_http_connection_refused_and_timeout() -> None:
    """Nothing listening, or no answer in time: the step fails saying which."""
    r = await run("http", {"url": f"http://127.0.0.1:{free_port()}/"}, ctx())
    assert not r.ok and "Cannot connect" in (r.error or "")

    from aiohttp import web

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response()

    app = web.Application()
    app.router.add_get("/", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        r = await run("http", {"url": f"http://127.0.0.1:{port}/", "timeout": "300ms"}, ctx())
    finally:
        await runner.cleanup()
    assert not r.ok and r.timed_out


async def test_grafana_annotation_covers_the_execution_with_tags(tmp_path: Path) -> None:
    """The annotation goes to /api/annotations with the token, a region from the execution's
    start to now in epoch ms, and tags for alert, rule, playbook and outcome."""
    token = tmp_path / "grafana-token"
    token.write_text("glsa_abc")
    async with Recorder((200, {"id": 12, "message": "Annotation added"})) as rec:
        grafana = GrafanaSettings(url=rec.url, token_file=str(token))
        r = await run(
            "grafana.annotate", {"tags": ["team:web"]}, ctx(Integrations(grafana=grafana), status="succeeded")
        )
    assert r.ok and r.outputs == {"annotation_id": 12}
    got = rec.requests[0]
    assert got["path"] == "/api/annotations" and got["headers"]["Authorization"] == "Bearer glsa_abc"
    body = got["body"]
    assert body["tags"] == [
        "receiver",
        "KubePodCrashLooping",
        "rule:crashloop",
        "playbook:restart-web",
        "outcome:succeeded",
        "team:web",
    ]
    assert 40_000 <= body["timeEnd"] - body["time"] <= 60_000  # started 42 s ago, in ms
    assert body["text"].startswith("restart-web for KubePodCrashLooping: succeeded")


async def test_grafana_refusal_is_a_failure() -> None:
    """A Grafana error (bad token) fails the step with its status and message."""
    async with Recorder((401, {"message": "invalid API key"})) as rec:
        r = await run("grafana.annotate", {}, ctx(Integrations(grafana=GrafanaSettings(url=rec.url))))
    assert not r.ok and "HTTP 401" in (r.error or "") and "invalid API key" in (r.error or "")


async def test_notify_sends_default_message_to_a_json_webhook() -> None:
    """Through Apprise's json:// notifier: the default title and body name the outcome, the
    alert, the playbook, each step and the execution's link; the type follows the outcome."""
    async with Recorder((200, {})) as rec:
        hook = rec.url.replace("http://", "json://") + "/notify"
        integrations = Integrations(notifiers={"oncall": NotifierSettings(urls=[hook])})
        r = await run(
            "notify", {"to": ["oncall"]}, ctx(integrations, status="failed", error="step 'restart' failed")
        )
    assert r.ok, r.error
    sent = rec.requests[0]["body"]
    assert sent["title"] == "[FAILED] KubePodCrashLooping · restart-web"
    assert sent["type"] == "failure"
    assert "web-1 restarts every minute" in sent["message"]
    assert "- restart: succeeded" in sent["message"]
    assert "http://receiver/api/v1/executions/e1" in sent["message"]


async def test_notify_failure_names_the_notifier_not_its_url(tmp_path: Path) -> None:
    """A notifier that refuses fails the step naming the notifier; its URL (which may hold a
    token, here read from a file) is never in the error or the output."""
    async with Recorder((500, {})) as rec:
        urls = tmp_path / "urls"
        urls.write_text("# on-call\n" + rec.url.replace("http://", "json://") + "/secret-token\n")
        integrations = Integrations(notifiers={"oncall": NotifierSettings(urls_file=str(urls))})
        r = await run("notify", {"to": ["oncall"], "title": "t", "body": "b"}, ctx(integrations))
    assert not r.ok and r.error == "notifier 'oncall': delivery failed"
    assert "secret-token" not in repr(r) and len(rec.requests) >= 1


async def test_notify_mail_through_a_real_smtp_server() -> None:
    """Apprise's mailto:// delivers the message to an SMTP server (aiosmtpd on loopback)."""
    from aiosmtpd.controller import Controller

    got: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            got.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        url = f"mailto://127.0.0.1:{port}?from=receiver@example.org&to=oncall@example.org&mode=insecure"
        integrations = Integrations(notifiers={"mail": NotifierSettings(urls=[url])})
        r = await run(
            "notify", {"to": ["mail"], "title": "disk cleaned", "body": "all good"}, ctx(integrations)
        )
    finally:
        controller.stop()
    assert r.ok, r.error
    assert got and got[0].rcpt_tos == ["oncall@example.org"]
    text = got[0].content.decode()
    assert "disk cleaned" in text and "all good" in text


@pytest.mark.parametrize("name", ["nobody"])
async def test_notify_unknown_notifier_at_run_time(name: str) -> None:
    """A notifier name that a template produced and the config lacks fails the step, named."""
    r = await run("notify", {"to": [name]}, ctx())
    assert not r.ok and r.error == "unknown notifier nobody"


async def test_notify_in_slack_format_to_a_slack_compatible_webhook() -> None:
    """Slack's own webhook host cannot be pointed at loopback; Mattermost's incoming webhooks
    take Slack's format, so Apprise's mmost:// shows the Slack-style payload arriving."""
    async with Recorder((200, "ok")) as rec:
        url = rec.url.replace("http://", "mmost://") + "/hooktoken"
        integrations = Integrations(notifiers={"chat": NotifierSettings(urls=[url])})
        r = await run(
            "notify", {"to": ["chat"], "title": "web-1 restarted", "body": "all good"}, ctx(integrations)
        )
    assert r.ok, r.error
    got = rec.requests[0]
    assert got["path"] == "/hooks/hooktoken"
    assert "web-1 restarted" in got["body"]["text"] and "all good" in got["body"]["text"]
