"""The Redis store behind TLS (rediss://, a TLS-enabled redis-server with certificates made by
openssl) and behind Sentinel (redis+sentinel://, a real redis-server in sentinel mode
monitoring a primary): admission and claims work through both."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.dedup import plan_admission
from receiver.execution import new_execution_id
from receiver.models import parse_payload
from receiver.store.base import StoreLimits
from receiver.store.redis import RedisStore
from tests.support import RedisServer, alert, free_port, load_rules_text, payload, wait_port
from tests.test_auth import pki  # noqa: F401  (fixture)

RULES = "rules:\n  - name: r\n    matchers: ['alertname=\"A\"']\n    playbook: p\n"


async def admit_and_claim(store: RedisStore, tmp_path: Path) -> None:
    rules = load_rules_text(tmp_path, RULES)
    plan = plan_admission(parse_payload(payload(alert("A"))), rules, now=time.time(), new_id=new_execution_id)
    result = await store.admit(plan, time.time())
    assert [d.outcome.value for d in result.decided] == ["admitted"]
    claimed = await store.claim("w", 2)
    assert claimed is not None and claimed.id == result.decided[0].execution_id


def start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


@pytest.fixture
def tls_redis(tmp_path: Path, pki: Path) -> Iterator[str]:  # noqa: F811
    port = free_port()
    proc = start(
        [
            RedisServer(tmp_path).binary,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(pki / "server.crt"),
            "--tls-key-file",
            str(pki / "server.key"),
            "--tls-ca-cert-file",
            str(pki / "ca.crt"),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        port,
    )
    try:
        yield f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={pki / 'ca.crt'}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_rediss_url_talks_tls(tls_redis: str, tmp_path: Path) -> None:
    """A rediss:// URL with the CA to trust admits and claims through TLS."""
    store = RedisStore.from_url(tls_redis, limits=StoreLimits())
    try:
        await store.ping()
        await admit_and_claim(store, tmp_path)
    finally:
        await store.close()


@pytest.fixture
def sentinel(tmp_path: Path, redis_server: RedisServer) -> Iterator[int]:
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor receiver-main 127.0.0.1 {redis_server.port} 1\n"
        f"dir {tmp_path}\n"
    )
    proc = start([redis_server.binary, str(conf), "--sentinel"], port)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_sentinel_url_finds_the_primary(sentinel: int, tmp_path: Path) -> None:
    """redis+sentinel://HOST:PORT/SERVICE/DB asks the Sentinel for the primary and works on it."""
    store = RedisStore.from_url(
        f"redis+sentinel://127.0.0.1:{sentinel}/receiver-main/6", limits=StoreLimits()
    )
    try:
        client: Any = store._r
        await client.flushdb()
        await admit_and_claim(store, tmp_path)
    finally:
        await store.close()


async def test_unreachable_sentinels_are_reported_in_one_sentence() -> None:
    """When no Sentinel answers, the store is unavailable with redis-py's sentence and the reason,
    without the client repr redis-py appends (it went into every log line and 503 body)."""
    from receiver.errors import StoreUnavailable

    store = RedisStore.from_url(f"redis+sentinel://127.0.0.1:{free_port()}/svc", limits=StoreLimits())
    try:
        with pytest.raises(StoreUnavailable) as e:
            await store.ping()
        said = str(e.value)
        assert said.startswith("redis store unavailable: No master found for 'svc' ("), said
        assert "<redis" not in said and "ConnectionPool" not in said
    finally:
        await store.close()


def test_sentence_keeps_plain_messages() -> None:
    """A message without the appended repr is kept as it is."""
    from receiver.store.redis import _sentence

    assert _sentence("Error 111 connecting to 127.0.0.1:6379. Connection refused.") == (
        "Error 111 connecting to 127.0.0.1:6379. Connection refused."
    )
