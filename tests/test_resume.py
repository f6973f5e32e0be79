"""Taking over an execution whose worker died: finished steps are kept, the interrupted step is
run again only when idempotent, otherwise the execution fails as interrupted and rolls back.

Here the dead worker is an engine task cancelled mid-step (its records stay as they were, like a
killed process's); test_crash.py does the same with real processes and SIGKILL.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from receiver.config import Config, load_config
from receiver.engine import Engine
from receiver.execution import Execution
from receiver.metrics import Metrics
from receiver.models import parse_payload
from receiver.runner import INTERRUPTED
from receiver.states import ExecutionStatus, StepStatus
from receiver.store.base import Store, StoreLimits
from tests.conftest import MakeStore
from tests.support import alert, payload, write_config

RULES = """
rules:
  - name: r
    matchers: ['alertname="A"']
    playbook: p
"""

PLAYBOOK = """
name: p
steps:
  - id: a
    action: script
    with: {{command: ["sh", "-c", "echo a >> {log}"]}}
    rollback: {{action: script, with: {{command: ["sh", "-c", "echo undo-a >> {log}"]}}}}
  - id: b
    action: script
    idempotent: {idempotent}
    with: {{command: ["sh", "-c", "echo b >> {log}; sleep {sleep}"]}}
  - id: c
    action: script
    with: {{command: ["sh", "-c", "echo c >> {log}"]}}
"""


def make_config(tmp_path: Path, *, idempotent: bool, sleep: float) -> Config:
    text = PLAYBOOK.format(log=tmp_path / "log", idempotent=str(idempotent).lower(), sleep=sleep)
    return load_config(write_config(tmp_path, rules=RULES, playbooks={"p": text}))


async def die_during_b(config: Config, store: Store) -> str:
    """Admit one alert; a worker runs it and dies while step b runs. Returns the execution id."""
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="dead")
    await engine.ingest(parse_payload(payload(alert("A"))))
    claimed = await store.claim("dead", 2)
    assert claimed is not None
    task = asyncio.create_task(engine.execute(claimed, "dead"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        e = await store.get(claimed.id)
        assert e is not None
        if e.steps and e.steps[1].status is StepStatus.RUNNING:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return claimed.id


async def take_over(config: Config, store: Store, ident: str) -> Execution:
    """Another worker reclaims the execution once it is idle long enough, and finishes it."""
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="alive")
    deadline = time.monotonic() + 10
    while (claimed := await store.claim("alive", 0.2)) is None and time.monotonic() < deadline:
        pass
    assert claimed is not None and claimed.id == ident
    assert claimed.status in (ExecutionStatus.RUNNING, ExecutionStatus.ROLLING_BACK)
    assert claimed.timeline[-1].event == "resumed"
    await engine.execute(claimed, "alive")
    done = await store.get(ident)
    assert done is not None
    return done


async def test_interrupted_step_fails_and_rolls_back(tmp_path: Path, make_store: MakeStore) -> None:
    """A step that is not idempotent is not run twice: the execution fails as interrupted, the
    steps before it are not run again, and their rollbacks run."""
    store = make_store(StoreLimits(reclaim_after_s=0.5))
    config = make_config(tmp_path, idempotent=False, sleep=30)
    ident = await die_during_b(config, store)
    done = await take_over(config, store, ident)
    assert done.status is ExecutionStatus.ROLLED_BACK
    assert done.error == "step 'b' failed: interrupted: the worker running it stopped"
    assert [s.status for s in done.steps] == [StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED]
    assert (tmp_path / "log").read_text().splitlines() == ["a", "b", "undo-a"]


async def test_idempotent_step_runs_again(tmp_path: Path, make_store: MakeStore) -> None:
    """An idempotent interrupted step runs again and the execution goes on; earlier steps do not."""
    store = make_store(StoreLimits(reclaim_after_s=0.5))
    config = make_config(tmp_path, idempotent=True, sleep=0.5)
    ident = await die_during_b(config, store)
    done = await take_over(config, store, ident)
    assert done.status is ExecutionStatus.SUCCEEDED, done.error
    assert (tmp_path / "log").read_text().splitlines() == ["a", "b", "b", "c"]
    assert done.steps[1].attempts == 2
    assert "step_interrupted" in [t.event for t in done.timeline]


async def test_resumed_playbook_clock_counts_time_already_run(tmp_path: Path, make_store: MakeStore) -> None:
    """The playbook's timeout spans the whole run: a takeover does not give it a fresh budget."""
    store = make_store(StoreLimits(reclaim_after_s=0.5))
    text = PLAYBOOK.format(log=tmp_path / "log", idempotent="true", sleep=30).replace(
        "name: p\n", "name: p\ntimeout: 2s\n"
    )
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"p": text}))
    ident = await die_during_b(config, store)
    await asyncio.sleep(1.0)  # with the reclaim wait, the 2s budget is nearly spent
    start = time.monotonic()
    done = await take_over(config, store, ident)
    assert time.monotonic() - start < 1.5
    assert done.status is ExecutionStatus.ROLLED_BACK  # timed out, then a's rollback ran
    assert "step 'b' failed: timed out" in (done.error or "") and done.steps[1].timed_out


async def test_takeover_during_rollback_finishes_the_rollback(tmp_path: Path, make_store: MakeStore) -> None:
    """A worker that dies while rolling back leaves the execution rolling_back; the next worker
    does not start the steps again, and the interrupted (not idempotent) rollback counts failed."""
    store = make_store(StoreLimits(reclaim_after_s=0.5))
    log = tmp_path / "log"
    text = f"""
name: p
steps:
  - id: a
    action: script
    with: {{command: ["sh", "-c", "echo a >> {log}"]}}
    rollback: {{action: script, with: {{command: ["sh", "-c", "echo undo-a >> {log}; sleep 30"]}}}}
  - id: b
    action: script
    with: {{command: ["false"]}}
"""
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"p": text}))
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="dead")
    await engine.ingest(parse_payload(payload(alert("A"))))
    claimed = await store.claim("dead", 2)
    assert claimed is not None
    task = asyncio.create_task(engine.execute(claimed, "dead"))
    deadline = time.monotonic() + 10
    while not (log.exists() and "undo-a" in log.read_text()) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    mid = await store.get(claimed.id)
    assert mid is not None and mid.status is ExecutionStatus.ROLLING_BACK
    done = await take_over(config, store, claimed.id)
    assert done.status is ExecutionStatus.ROLLBACK_FAILED
    rb = done.steps[0].rollback
    assert rb is not None and rb.status is StepStatus.FAILED and rb.error == INTERRUPTED
    assert log.read_text().splitlines() == ["a", "undo-a"]


async def test_execution_that_keeps_killing_its_workers_fails(tmp_path: Path, make_store: MakeStore) -> None:
    """An execution taken over more than MAX_TAKEOVERS times fails, saying why, instead of going
    round the workers forever."""
    from receiver.engine import MAX_TAKEOVERS

    store = make_store(StoreLimits(reclaim_after_s=0.2))
    config = make_config(tmp_path, idempotent=True, sleep=30)
    ident = await die_during_b(config, store)
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="x")
    for n in range(MAX_TAKEOVERS + 1):
        await asyncio.sleep(0.25)
        taken = await store.claim(f"w{n}", 1)
        assert taken is not None and taken.id == ident
    status = await engine.execute(taken, f"w{MAX_TAKEOVERS}")
    done = await store.get(ident)
    assert status is ExecutionStatus.FAILED and done is not None
    assert done.error == f"taken over {MAX_TAKEOVERS + 1} times: every worker running it stopped answering"
