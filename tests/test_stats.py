"""Reports: success and recovery rates, time to recover, suppressions by reason and top failure
reasons, per rule and per playbook; computed purely, then served by GET /api/v1/stats from what
a real engine recorded in each store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from receiver import handlers
from receiver.app import create_app
from receiver.config import load_config
from receiver.execution import Execution, ExecutionMeta, StepRecord
from receiver.handlers import ENGINE
from receiver.models import parse_payload
from receiver.states import ExecutionStatus, StepStatus
from receiver.stats import percentile, report
from receiver.store.base import Store
from tests.support import alert, payload, write_config

ALERT = parse_payload(payload(alert("A"))).alerts[0]


def execution(
    n: int,
    status: ExecutionStatus,
    *,
    rule: str = "r",
    playbook: str = "p",
    resolved_after: float | None = None,
    steps: list[StepRecord] | None = None,
    error: str | None = None,
) -> Execution:
    meta = ExecutionMeta(
        id=f"e{n}", rule=rule, playbook=playbook, params={}, dedup_key="", on_resolved="ignore",
        alert=ALERT, created_at=1000.0,
    )  # fmt: skip
    return Execution(
        meta=meta,
        status=status,
        started_at=1000.0,
        finished_at=1010.0,
        resolved_at=None if resolved_after is None else 1000.0 + resolved_after,
        steps=steps or [],
        error=error,
    )


def failed_step(step: str, *, error: str | None = None, exit_code: int | None = None) -> StepRecord:
    return StepRecord(id=step, action="script", status=StepStatus.FAILED, exit_code=exit_code, error=error)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.9, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([10.0, 1.0, 2.0, 3.0, 4.0], 0.9, 7.6),
    ],
)
def test_percentile_interpolates_between_neighbours(
    values: list[float], q: float, expected: float | None
) -> None:
    """Quantiles interpolate linearly between the sorted values (numpy's default)."""
    assert percentile(values, q) == expected


def test_rates_count_decided_executions_and_leave_out_cancelled_and_running() -> None:
    """Success and recovery rates are over executions that ended other than cancelled; time to
    recover uses the recovered ones only."""
    got = report(
        [
            execution(1, ExecutionStatus.SUCCEEDED, resolved_after=30),
            execution(2, ExecutionStatus.SUCCEEDED, resolved_after=90),
            execution(3, ExecutionStatus.SUCCEEDED),
            execution(4, ExecutionStatus.FAILED, steps=[failed_step("restart", exit_code=1)]),
            execution(5, ExecutionStatus.CANCELLED),
            execution(6, ExecutionStatus.RUNNING),
        ],
        {},
    )["totals"]
    assert got["executions"] == 6
    assert got["success_rate"] == 0.75
    assert got["recovery_rate"] == 0.5
    assert got["time_to_recover_s"] == {"p50": 60.0, "p90": 84.0}
    assert got["outcomes"] == {"cancelled": 1, "failed": 1, "running": 1, "succeeded": 3}


def test_top_failures_group_by_step_and_reason_most_frequent_first() -> None:
    """The first failed step and its error (or exit code, or timeout) group failures; an
    execution that failed outside any step is listed by its own error."""
    got = report(
        [
            execution(1, ExecutionStatus.FAILED, steps=[failed_step("restart", exit_code=1)]),
            execution(2, ExecutionStatus.ROLLED_BACK, steps=[failed_step("restart", exit_code=1)]),
            execution(3, ExecutionStatus.FAILED, steps=[failed_step("check", error="HTTP 500")]),
            execution(4, ExecutionStatus.FAILED, error="playbook 'p' is not loaded"),
        ],
        {},
    )["totals"]["top_failures"]
    assert got == [
        {"step": "restart", "error": "exit code 1", "count": 2},
        {"step": None, "error": "playbook 'p' is not loaded", "count": 1},
        {"step": "check", "error": "HTTP 500", "count": 1},
    ]


def test_rules_and_playbooks_each_get_their_own_figures_and_suppressions() -> None:
    """Executions and suppressed counts land on their rule and their playbook; alerts no rule
    matched are counted apart."""
    got = report(
        [execution(1, ExecutionStatus.SUCCEEDED, rule="a", playbook="p"), execution(2, ExecutionStatus.FAILED, rule="b", playbook="p")],
        {("a", "p", "duplicate"): 4, ("b", "p", "cooldown"): 2, ("", "", "no_rule"): 3},
    )  # fmt: skip
    rules = {r["rule"]: r for r in got["rules"]}
    assert rules["a"]["success_rate"] == 1.0 and rules["a"]["suppressed"] == {"duplicate": 4}
    assert rules["b"]["success_rate"] == 0.0 and rules["b"]["suppressed"] == {"cooldown": 2}
    assert rules["a"]["playbooks"] == ["p"]
    [p] = got["playbooks"]
    assert p["executions"] == 2 and p["suppressed"] == {"cooldown": 2, "duplicate": 4}
    assert got["unrouted"] == 3
    assert got["totals"]["suppressed"] == {"cooldown": 2, "duplicate": 4}


RULES = """
rules:
  - name: fix
    matchers: ['alertname="A"']
    playbook: p
    dedup: {cooldown: 1h}
"""


async def wait_ended(client: TestClient[Any, Any], ident: str) -> dict[str, Any]:
    for _ in range(200):
        body: dict[str, Any] = await (await client.get(f"/api/v1/executions/{ident}")).json()
        if body["status"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"execution {ident} did not end")


async def test_stats_endpoint_reports_what_the_engine_recorded(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real run, a re-send, a cooldown and an unrouted alert show up in /api/v1/stats for the
    rule and the playbook; a report is answered again from memory until STATS_CACHE_S passes."""
    steps = "  - id: s\n    action: script\n    with: {command: [sh, -c, 'exit 3']}\n"
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"p": f"name: p\nsteps:\n{steps}"}))
    app = create_app(config, store=store)
    async with TestClient(TestServer(app)) as client:
        first = payload(alert("A", starts_at="2026-11-24T10:00:00Z"))
        accepted = (await (await client.post("/webhook", json=first)).json())["accepted"]
        done = await wait_ended(client, accepted[0]["execution_id"])
        assert done["status"] == "failed"
        await client.post("/webhook", json=first)  # a re-send: duplicate
        await client.post("/webhook", json=payload(alert("A", starts_at="2026-11-24T11:00:00Z")))  # cooldown
        await client.post("/webhook", json=payload(alert("Other")))  # no rule
        await app[ENGINE].flush_stats()
        resp = await client.get("/api/v1/stats", params={"since": "1h"})
        body = await resp.json()
        assert resp.status == 200, body
        # Another unrouted alert: the same report is answered for a while, then a new one.
        await client.post("/webhook", json=payload(alert("Other", n="2")))
        await app[ENGINE].flush_stats()
        assert (await (await client.get("/api/v1/stats", params={"since": "1h"})).json()) == body
        monkeypatch.setattr(handlers, "STATS_CACHE_S", 0.0)
        fresh = await (await client.get("/api/v1/stats", params={"since": "1h"})).json()
        assert fresh["unrouted"] == 2
    assert body["executions_scanned"] == 1 and body["truncated"] is False
    [rule] = body["rules"]
    assert rule["rule"] == "fix" and rule["playbooks"] == ["p"]
    assert rule["outcomes"] == {"failed": 1}
    assert rule["success_rate"] == 0.0
    assert rule["suppressed"] == {"cooldown": 1, "duplicate": 1}
    assert rule["top_failures"] == [{"step": "s", "error": "exit code 3", "count": 1}]
    assert body["playbooks"][0]["playbook"] == "p"
    assert body["unrouted"] == 1


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "nan"}, "since"),
        ({"rule": "x"}, "rule"),
    ],
)
async def test_stats_refuses_bad_parameters_naming_them(
    tmp_path: Path, store: Store, query: dict[str, str], param: str
) -> None:
    """An unreadable `since` (a word, NaN), or an unknown parameter, is a 400 naming it."""
    config = load_config(
        write_config(
            tmp_path,
            rules=RULES,
            playbooks={"p": "name: p\nsteps: [{id: s, action: script, with: {command: ['true']}}]\n"},
        )
    )
    async with TestClient(TestServer(create_app(config, store=store, workers=False))) as client:
        resp = await client.get("/api/v1/stats", params=query)
        assert resp.status == 400
        assert (await resp.json())["param"] == param


async def test_report_stops_at_the_scan_limit_and_says_so(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past STATS_SCAN_MAX executions the report reads no more, newest first, a page at a time,
    and marks itself truncated; under it, it is complete."""
    from receiver.engine import Engine
    from receiver.metrics import Metrics

    config = load_config(write_config(tmp_path, rules=RULES.replace("dedup: {cooldown: 1h}", "dedup: {cooldown: 0s}"), playbooks={"p": "name: p\nsteps: [{id: s, action: script, with: {command: ['true']}}]\n"}))  # fmt: skip
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="t")
    report = await engine.ingest(parse_payload(payload(*(alert("A", n=str(i)) for i in range(3)))))
    assert len(report.accepted) == 3
    monkeypatch.setattr("receiver.engine.STATS_PAGE", 1)
    whole = await engine.report(None)
    assert (whole["executions_scanned"], whole["truncated"]) == (3, False)
    monkeypatch.setattr("receiver.engine.STATS_SCAN_MAX", 2)
    cut = await engine.report(None)
    assert (cut["executions_scanned"], cut["truncated"], cut["totals"]["executions"]) == (2, True, 2)
