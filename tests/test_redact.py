"""Secrets read from files never reach step records, the timeline, notifications or logs: each
known secret is replaced by [redacted] wherever it would appear."""

from __future__ import annotations

import io
import json
from pathlib import Path

from aiohttp import web

from receiver.config import load_config
from receiver.engine import Engine
from receiver.logs import configure, get_logger
from receiver.metrics import Metrics
from receiver.models import parse_payload
from receiver.redact import REDACTED
from receiver.store.base import Store
from tests.support import alert, free_port, payload, write_config

RULES = "rules:\n  - name: r\n    matchers: ['alertname=\"A\"']\n    playbook: p\n"
SECRET = "tok-9f8e7d6c5b4a-secret"


async def test_secret_echoed_by_a_server_or_printed_by_a_script_is_redacted(
    tmp_path: Path, store: Store
) -> None:
    """A server that echoes the Authorization header, a script that prints the token file, and a
    failing step whose error holds the token: the records say [redacted], never the token."""
    (tmp_path / "token").write_text(SECRET + "\n")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"you_sent": request.headers.get("Authorization", "")})

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    playbook = f"""name: p
steps:
  - id: call
    action: http
    with: {{url: "http://127.0.0.1:{port}/", bearer_token_file: "{tmp_path / "token"}"}}
  - id: print
    action: script
    with: {{command: ["cat", "{tmp_path / "token"}"]}}
  - id: fail
    action: script
    with: {{command: ["sh", "-c", "echo $1 >&2; exit 3", "x", "{{{{ steps.print.stdout | trim }}}}"]}}
"""
    try:
        config = load_config(write_config(tmp_path, rules=RULES, playbooks={"p": playbook}))
        engine = Engine(config=config, store=store, metrics=Metrics(), consumer="t")
        await engine.ingest(parse_payload(payload(alert("A"))))
        claimed = await store.claim("w", 2)
        assert claimed is not None
        await engine.execute(claimed, "w")
    finally:
        await runner.cleanup()
    done = await store.get(claimed.id)
    assert done is not None
    text = json.dumps(done.detail())
    assert SECRET not in text
    assert json.loads(done.steps[0].stdout)["you_sent"] == f"Bearer {REDACTED}"
    assert done.steps[1].stdout == f"{REDACTED}\n"
    assert done.steps[2].stderr == f"{REDACTED}\n"


def test_logs_never_carry_a_known_secret(tmp_path: Path) -> None:
    """A log event whose fields hold a secret (read from a file) prints [redacted] instead."""
    from receiver.integrations import read_secret

    (tmp_path / "t").write_text("log-secret-123456\n")
    value = read_secret(str(tmp_path / "t"))
    out = io.StringIO()
    configure(json=True, stream=out)
    try:
        get_logger().warning("call.failed", error=f"401 with token {value}", nested={"h": [value]})
    finally:
        configure(json=True)
    line = json.loads(out.getvalue())
    assert "log-secret-123456" not in out.getvalue()
    assert line["error"] == f"401 with token {REDACTED}" and line["nested"] == {"h": [REDACTED]}
