"""Hot reload: a valid config replaces the old one atomically, an invalid one is refused with
every error and the old one stays, and executions run the playbook version they were admitted
with, whichever replica runs them and whatever it has loaded since."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from receiver.app import create_app
from receiver.config import Config, Settings, load_config
from receiver.engine import Engine
from receiver.metrics import Metrics
from receiver.models import parse_payload
from receiver.playbook import definition_of
from receiver.reload import Reloader, restart_only_changes
from receiver.states import ExecutionStatus
from receiver.store.base import Store
from tests.support import alert, claim_and_run, payload, write_config

RULES = """
rules:
  - name: r
    matchers: ['alertname="A"']
    playbook: p
"""


def playbook(word: str) -> str:
    """A one-step playbook that prints `word`: which version ran shows in the step's output."""
    return f"name: p\nsteps:\n  - id: say\n    action: script\n    with: {{command: [echo, {word}]}}\n"


def configure(tmp_path: Path, word: str, rules: str = RULES, settings: str = "") -> Path:
    return write_config(tmp_path, rules=rules, playbooks={"p": playbook(word)}, settings=settings)


async def admit(engine: Engine, n: int) -> str:
    report = await engine.ingest(parse_payload(payload(alert("A", n=str(n)))))
    assert len(report.accepted) == 1, report
    return report.accepted[0]["execution_id"]


def test_playbook_version_ignores_layout_and_follows_content() -> None:
    """The version digests the document's data: key order and layout do not change it, a
    changed value does."""
    a = definition_of({"name": "p", "steps": [{"id": "s", "action": "script"}]})[1]
    b = definition_of({"steps": [{"action": "script", "id": "s"}], "name": "p"})[1]
    c = definition_of({"name": "p", "steps": [{"id": "t", "action": "script"}]})[1]
    assert a == b != c
    assert len(a) == 12


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"listen": "127.0.0.1:9095"}, {"listen": "127.0.0.1:9096"}, ["listen"]),
        ({"workers": 4}, {"workers": 8, "external_url": "http://x"}, ["workers"]),
        ({"history": {"output_limit_bytes": 100}}, {"history": {"output_limit_bytes": 200}}, []),
        ({"history": {"retention": "1d"}}, {"history": {"retention": "2d"}}, ["history.retention"]),
        ({}, {"external_url": "http://receiver"}, []),
    ],
)
def test_restart_only_changes_names_what_a_reload_cannot_apply(
    before: dict[str, object], after: dict[str, object], expected: list[str]
) -> None:
    """Settings bound at start are reported; those read per use (external_url, output limit)
    are not."""
    assert restart_only_changes(Settings.model_validate(before), Settings.model_validate(after)) == expected


async def test_queued_execution_runs_the_version_it_was_admitted_with(tmp_path: Path, store: Store) -> None:
    """An execution admitted before a reload runs the old playbook; one admitted after runs the
    new one; each records its version."""
    path = configure(tmp_path, "one")
    old = load_config(path)
    engine = Engine(config=old, store=store, metrics=Metrics(), consumer="t")
    first = await admit(engine, 1)
    configure(tmp_path, "two")
    new = load_config(path)
    assert new.version != old.version
    assert new.playbooks["p"].version != old.playbooks["p"].version
    engine.use_config(new)
    second = await admit(engine, 2)
    ran = {e.id: e for e in [await claim_and_run(engine, store), await claim_and_run(engine, store)]}
    assert ran[first].steps[0].stdout.strip() == "one"
    assert ran[first].meta.playbook_version == old.playbooks["p"].version
    assert ran[second].steps[0].stdout.strip() == "two"
    assert ran[second].meta.playbook_version == new.playbooks["p"].version


async def test_replica_without_the_version_fetches_it_from_the_store(tmp_path: Path, store: Store) -> None:
    """A replica that only ever loaded the new playbook runs an execution pinned to the old one
    from the definition the admitting replica published."""
    old_dir, new_dir = tmp_path / "a", tmp_path / "b"
    old_dir.mkdir()
    new_dir.mkdir()
    admitting = Engine(
        config=load_config(configure(old_dir, "old")), store=store, metrics=Metrics(), consumer="a"
    )
    ident = await admit(admitting, 1)
    other = Engine(
        config=load_config(configure(new_dir, "new")), store=store, metrics=Metrics(), consumer="b"
    )
    done = await claim_and_run(other, store)
    assert done.id == ident
    assert done.status is ExecutionStatus.SUCCEEDED
    assert done.steps[0].stdout.strip() == "old"
    assert await other.plan_of(done.meta) == [{"id": "say", "action": "script", "needs": []}]


async def test_unknown_version_fails_the_execution_saying_so(tmp_path: Path, store: Store) -> None:
    """An execution pinned to a version neither loaded nor stored fails with a reason naming it,
    instead of running another version."""
    config = load_config(configure(tmp_path, "x"))
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="t")
    meta = await engine.enqueue(
        alert=parse_payload(payload(alert("A"))).alerts[0], rule="r", playbook="p", params={}
    )
    claimed = await store.claim("w", 2)
    assert claimed is not None and claimed.id == meta.id
    pinned = claimed.model_copy(
        update={"meta": claimed.meta.model_copy(update={"playbook_version": "0123456789ab"})}
    )
    assert await engine.execute(pinned, "w") is ExecutionStatus.FAILED
    done = await store.get(meta.id)
    assert done is not None
    assert done.error == "playbook 'p' version 0123456789ab is neither loaded nor stored"


async def test_reload_switches_to_a_valid_config_and_reports_it(tmp_path: Path, store: Store) -> None:
    """A valid change is put in use: new version, changed=True, the metrics and status follow;
    a reload of unchanged files is ok without a change."""
    path = configure(tmp_path, "one")
    engine = Engine(config=load_config(path), store=store, metrics=Metrics(), consumer="t")
    reloader = Reloader(engine)
    before = engine.config.version
    same = await reloader.reload("api")
    assert same.ok and not same.changed and same.version == before
    configure(tmp_path, "two", settings="external_url: http://receiver.example\n")
    result = await reloader.reload("SIGHUP")
    assert result.ok and result.changed and result.restart_required == []
    assert engine.config.version == result.version != before
    assert engine.execution_url("x") == "http://receiver.example/api/v1/executions/x"
    assert reloader.status()["playbooks"] == {"p": engine.config.playbooks["p"].version}
    text = engine.metrics.render().decode()
    assert f'receiver_config_info{{version="{result.version}"}} 1.0' in text
    assert f'version="{before}"' not in text
    assert "receiver_config_last_reload_successful 1.0" in text
    assert 'receiver_config_reloads_total{result="success"} 2.0' in text


async def test_invalid_config_is_refused_with_every_error_and_the_old_one_stays(
    tmp_path: Path, store: Store
) -> None:
    """Two mistakes in the new files are both listed; routing still uses the old config."""
    path = configure(tmp_path, "one")
    engine = Engine(config=load_config(path), store=store, metrics=Metrics(), consumer="t")
    reloader = Reloader(engine)
    before = engine.config
    broken = (
        RULES
        + "  - name: s\n    matchers: ['alertname=~\"(\"']\n    playbook: p\n"
        + "  - name: t\n    matchers: ['alertname=\"T\"']\n    playbook: missing\n"
    )
    configure(tmp_path, "two", rules=broken)
    result = await reloader.reload("api")
    assert not result.ok and not result.changed
    assert result.version == before.version
    assert len(result.errors) == 2, result.errors
    assert any("missing" in e for e in result.errors)
    assert any("alertname" in e for e in result.errors)
    assert engine.config is before
    text = engine.metrics.render().decode()
    assert "receiver_config_last_reload_successful 0.0" in text
    assert f'receiver_config_info{{version="{before.version}"}} 1.0' in text
    assert await admit(engine, 1)  # still routes with the old rules


async def test_reload_endpoint_and_status(tmp_path: Path, store: Store) -> None:
    """POST /-/reload answers 200 with the result or 400 listing the errors; GET /api/v1/status
    shows the version in use and the last reload."""
    path = configure(tmp_path, "one")
    config: Config = load_config(path)
    app = create_app(config, store=store, workers=False)
    async with TestClient(TestServer(app)) as client:
        status = await (await client.get("/api/v1/status")).json()
        assert status["config"]["version"] == config.version
        assert status["config"]["last_reload"]["trigger"] == "startup"
        configure(tmp_path, "two")
        resp = await client.post("/-/reload")
        body = await resp.json()
        assert resp.status == 200 and body["changed"] is True
        (tmp_path / "playbooks" / "p.yml").write_text("name: p\nsteps: nope\n")
        resp = await client.post("/-/reload")
        bad = await resp.json()
        assert resp.status == 400
        assert bad["error"] == "the new config has 1 error(s); the one in use stays"
        assert "steps" in bad["errors"][0]
        status = await (await client.get("/api/v1/status")).json()
        assert status["config"]["version"] == body["version"]
        assert status["config"]["last_reload"]["ok"] is False


async def test_watch_reloads_on_a_content_change_and_refuses_a_bad_one_once(
    tmp_path: Path, store: Store
) -> None:
    """With watching on, a changed playbook, a new rules file and a broken edit are each noticed
    by content: good ones are put in use, a bad one is refused once (not at every look), and
    unchanged files cause no reload."""
    path = configure(tmp_path, "one")
    engine = Engine(config=load_config(path), store=store, metrics=Metrics(), consumer="t")
    reloader = Reloader(engine)
    watcher = asyncio.create_task(reloader.watch(0.05))

    async def until(check: Callable[[], bool]) -> None:
        for _ in range(100):
            if check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not reached; last reload {reloader.last}")

    def reloads(result: str) -> float:
        return engine.metrics.reloads.labels(result)._value.get()

    try:
        first = engine.config.version
        await asyncio.sleep(0.3)
        assert reloads("success") == 0  # nothing changed: nothing reloaded
        configure(tmp_path, "two")
        await until(lambda: engine.config.version != first)
        assert reloader.last.trigger == "watch" and reloader.last.ok
        (tmp_path / "rules" / "more.yml").write_text(
            "rules:\n  - name: extra\n    matchers: ['alertname=\"B\"']\n    playbook: p\n"
        )
        # rules files load in name order: more.yml before rules.yml
        await until(lambda: [r.name for r in engine.config.rules] == ["extra", "r"])
        (tmp_path / "playbooks" / "p.yml").write_text("name: p\nsteps: nope\n")
        await until(lambda: not reloader.last.ok)
        await asyncio.sleep(0.3)
        assert reloads("failure") == 1
        assert [r.name for r in engine.config.rules] == ["extra", "r"]
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
