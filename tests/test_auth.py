"""Who may call what: webhook credentials as Alertmanager sends them (Bearer or basic, from
files, rotated without a restart), API tokens with roles, and TLS with client certificates."""

from __future__ import annotations

import base64
import http.client
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from receiver.app import create_app
from receiver.config import load_config
from receiver.store.base import Store
from tests.support import alert, free_port, payload, wait_port, write_config

RULES = "rules:\n  - name: r\n    matchers: ['alertname=\"A\"']\n    playbook: p\n"
PLAYBOOK = 'name: p\nsteps:\n  - id: s\n    action: approval\n    with: {message: "go?"}\n'


def secrets(tmp_path: Path, **values: str) -> None:
    for name, value in values.items():
        (tmp_path / name).write_text(value + "\n")


async def client_for(
    tmp_path: Path, store: Store, settings: str, workers: bool = False
) -> TestClient[Any, Any]:
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"p": PLAYBOOK}, settings=settings))
    client = TestClient(TestServer(create_app(config, store=store, workers=workers)))
    await client.start_server()
    return client


@pytest.fixture
async def bearer_client(tmp_path: Path, store: Store) -> AsyncIterator[TestClient[Any, Any]]:
    secrets(tmp_path, **{"webhook-token": "hook-s3cret"})
    client = await client_for(tmp_path, store, "auth: {webhook: {bearer_token_file: webhook-token}}\n")
    yield client
    await client.close()


async def test_webhook_needs_the_bearer_token(bearer_client: TestClient[Any, Any], tmp_path: Path) -> None:
    """Without the token or with a wrong one: 401 naming what is needed, nothing admitted; with
    it: 200. A new token in the file works at once, the old one no longer."""
    body = payload(alert("A"))
    r = await bearer_client.post("/webhook", json=body)
    assert r.status == 401 and "auth.webhook" in (await r.json())["error"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await bearer_client.post("/webhook", json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status == 401
    r = await bearer_client.post("/webhook", json=body, headers={"Authorization": "Bearer hook-s3cret"})
    assert r.status == 200 and len((await r.json())["accepted"]) == 1
    (tmp_path / "webhook-token").write_text("rotated-token-longer\n")
    r = await bearer_client.post("/webhook", json=body, headers={"Authorization": "Bearer hook-s3cret"})
    assert r.status == 401
    r = await bearer_client.post(
        "/webhook", json=body, headers={"Authorization": "Bearer rotated-token-longer"}
    )
    assert r.status == 200


async def test_webhook_basic_auth(tmp_path: Path, store: Store) -> None:
    """Basic auth as Alertmanager's basic_auth sends it: right user and password only."""
    secrets(tmp_path, pw="hunter2")
    client = await client_for(
        tmp_path, store, "auth: {webhook: {basic: {username: am, password_file: pw}}}\n"
    )

    def basic(user: str, pw: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}

    try:
        body = payload(alert("A"))
        assert (await client.post("/webhook", json=body, headers=basic("am", "hunter2"))).status == 200
        assert (await client.post("/webhook", json=body, headers=basic("am", "nope"))).status == 401
        assert (await client.post("/webhook", json=body, headers=basic("eve", "hunter2"))).status == 401
        bad = {"Authorization": "Basic %%%notbase64"}
        assert (await client.post("/webhook", json=body, headers=bad)).status == 401
    finally:
        await client.close()


async def test_api_roles(tmp_path: Path, store: Store) -> None:
    """With api_tokens: no token is 401, a viewer reads but cannot act (403 naming the role), an
    operator acts and is recorded as the approver; probes, metrics and the webhook need none."""
    secrets(tmp_path, viewer="v-token", operator="o-token")
    settings = (
        "auth:\n  api_tokens:\n"
        "    - {name: dashboards, token_file: viewer, role: viewer}\n"
        "    - {name: alice, token_file: operator, role: operator}\n"
    )
    client = await client_for(tmp_path, store, settings, workers=True)
    viewer = {"Authorization": "Bearer v-token"}
    operator = {"Authorization": "Bearer o-token"}
    try:
        for path in ("/-/healthy", "/-/ready", "/metrics"):
            assert (await client.get(path)).status == 200
        r = await client.post("/webhook", json=payload(alert("A")))
        ident = (await r.json())["accepted"][0]["execution_id"]
        assert (await client.get("/api/v1/executions")).status == 401
        assert (await client.get("/api/v1/executions", headers={"Authorization": "Bearer x"})).status == 401
        assert (await client.get("/api/v1/executions", headers=viewer)).status == 200
        r = await client.post(f"/api/v1/executions/{ident}/approve", headers=viewer)
        assert r.status == 403
        assert (await r.json())["error"] == (
            f"POST /api/v1/executions/{ident}/approve needs role operator; dashboards has viewer"
        )
        import asyncio

        for _ in range(100):
            e = await (await client.get(f"/api/v1/executions/{ident}", headers=viewer)).json()
            if e["status"] == "waiting_approval":
                break
            await asyncio.sleep(0.05)
        r = await client.post(f"/api/v1/executions/{ident}/approve", headers=operator, json={"by": "mallory"})
        assert r.status == 200 and (await r.json())["approval"]["decision"]["by"] == "alice"
    finally:
        await client.close()


async def test_whoami_names_the_token_and_its_role(tmp_path: Path, store: Store) -> None:
    """GET /api/v1/whoami answers the token's name and role, 401 without one; with no api_tokens
    configured the API is open and says so (role admin, not authenticated)."""
    secrets(tmp_path, viewer="v-token")
    settings = "auth:\n  api_tokens:\n    - {name: dashboards, token_file: viewer, role: viewer}\n"
    client = await client_for(tmp_path, store, settings)
    try:
        assert (await client.get("/api/v1/whoami")).status == 401
        r = await client.get("/api/v1/whoami", headers={"Authorization": "Bearer v-token"})
        assert await r.json() == {"name": "dashboards", "role": "viewer", "authenticated": True}
    finally:
        await client.close()
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    client = await client_for(open_dir, store, "")
    try:
        r = await client.get("/api/v1/whoami")
        assert await r.json() == {"name": None, "role": "admin", "authenticated": False}
    finally:
        await client.close()


def test_missing_secret_files_are_load_errors(tmp_path: Path) -> None:
    """A token file that does not exist is named when the config loads."""
    from receiver.errors import ConfigErrors

    path = write_config(
        tmp_path,
        rules=RULES,
        playbooks={"p": PLAYBOOK},
        settings="auth: {webhook: {bearer_token_file: gone}}\n",
    )
    with pytest.raises(ConfigErrors, match="auth: cannot read secret file"):
        load_config(path)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    d = tmp_path / "pki"
    d.mkdir()
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            cwd=d,
        )
    return d


def test_tls_listener_requires_a_client_certificate(tmp_path: Path, pki: Path) -> None:
    """`receiver serve` with tls: HTTPS only; with client_ca_file, a client without a certificate
    signed by that CA is refused during the handshake, one with it gets through."""
    port = free_port()
    settings = (
        f"listen: 127.0.0.1:{port}\n"
        f"tls: {{cert_file: {pki}/server.crt, key_file: {pki}/server.key, client_ca_file: {pki}/ca.crt}}\n"
    )
    path = write_config(tmp_path, rules=RULES, playbooks={"p": PLAYBOOK}, settings=settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--config", str(path), "--log-format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_port(port)
        url = f"https://127.0.0.1:{port}/-/healthy"
        anonymous = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
            urllib.request.urlopen(url, context=anonymous, timeout=5).read()
        known = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        known.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
        with urllib.request.urlopen(url, context=known, timeout=5) as resp:
            assert resp.status == 200
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=5).read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
