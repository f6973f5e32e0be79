"""Three replicas on one Redis, the same payloads delivered to all three at once (as HA
Alertmanager peers do): each (alert, rule) is admitted exactly once, and a playbook's lock is
held by one execution at a time across the replicas."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.test_crash import Receivers, http, redis_url, wait_for  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(120)

PLAYBOOK = """
name: p
lock: "{{{{ alert.labels.target }}}}"
steps:
  - id: work
    action: script
    with: {{command: ["sh", "-c", "echo \\"start $1 $(date +%s.%N)\\" >> {log}; sleep 0.3; echo \\"end $1 $(date +%s.%N)\\" >> {log}", "w", "{{{{ alert.labels.target }}}}"]}}
"""


def body(i: int) -> dict[str, Any]:
    alert = {
        "status": "firing",
        "labels": {"alertname": "Crash", "instance": f"node-{i}", "target": f"t{i % 3}"},
        "annotations": {},
        "startsAt": "2026-11-24T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }
    return {"version": "4", "receiver": "r", "status": "firing", "alerts": [alert], "groupKey": f"{{}}:{i}"}


def test_three_replicas_admit_each_alert_once_and_hold_locks_apart(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    """20 alerts, each posted to all three replicas at the same moment: 20 admissions and 40
    duplicates in all; every execution ends succeeded; runs for the same target never overlap."""
    r = Receivers(tmp_path, redis_url, idempotent=False)
    log = tmp_path / "log"
    (tmp_path / "playbooks" / "p.yml").write_text(PLAYBOOK.format(log=log))
    try:
        urls = [r.urls[r.start()] for _ in range(3)]
        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(
                pool.map(
                    lambda job: http("POST", f"{job[0]}/webhook", body(job[1])),
                    [(u, i) for i in range(20) for u in urls],
                )
            )
        accepted = [a for ans in answers for a in ans["accepted"]]
        duplicates = [s for ans in answers for s in ans["suppressed"] if s["reason"] == "duplicate"]
        assert (len(accepted), len(duplicates)) == (20, 40)
        assert len({a["fingerprint"] for a in accepted}) == 20

        def all_ended() -> Any:
            items = http("GET", f"{urls[0]}/api/v1/executions?limit=100")["items"]
            return items if len(items) == 20 and all(e["finished_at"] for e in items) else None

        items = wait_for("every execution to end", all_ended, timeout=60)
        assert {e["status"] for e in items} == {"succeeded"}
        held: dict[str, list[tuple[float, float]]] = {}
        starts: dict[str, list[float]] = {}
        for line in log.read_text().splitlines():
            what, target, at = line.split()
            if what == "start":
                starts.setdefault(target, []).append(float(at))
            else:
                held.setdefault(target, []).append((starts[target].pop(0), float(at)))
        for target, spans in held.items():
            spans.sort()
            assert len(spans) in (6, 7)
            for (_, end), (start, _) in pairwise(spans):
                assert start >= end, f"two runs for {target} overlapped"
    finally:
        r.stop()
