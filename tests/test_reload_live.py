"""Hot reload of a real `receiver serve` process on Redis, under webhook load: SIGHUP and
POST /-/reload, with good and bad configs in turn, never fail a webhook; a playbook already
running finishes with the version it started with."""

from __future__ import annotations

import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import RedisServer, alert, payload, serving
from tests.test_e2e_alertmanager import http, wait_for

pytestmark = pytest.mark.timeout(120)

RULES = """
rules:
  - name: slow
    matchers: ['alertname="Slow"']
    playbook: slow
  - name: fast
    matchers: ['alertname="Fast"']
    playbook: fast
"""


def playbooks(word: str) -> dict[str, str]:
    return {
        "slow": f"name: slow\nsteps:\n  - id: s\n    action: script\n"
        f"    with: {{command: [sh, -c, 'sleep 3; echo slow-{word}']}}\n",
        "fast": f"name: fast\nsteps:\n  - id: f\n    action: script\n    with: {{command: [echo, fast-{word}]}}\n",
    }


def write(tmp_path: Path, word: str, rules: str = RULES) -> None:
    (tmp_path / "rules.yml").write_text(rules)
    for name, text in playbooks(word).items():
        (tmp_path / f"{name}.yml").write_text(text)


class Load(threading.Thread):
    """Posts webhooks, each with a new alert, until stopped (at most 2000 or 60s); keeps every
    status that was not 200."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.sent = 0
        self.failures: list[Any] = []
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and self.sent < 2000 and time.monotonic() < deadline:
            body = payload(alert("Fast", n=str(self.sent)))
            try:
                http("POST", f"{self.url}/webhook", body)
            except urllib.error.HTTPError as e:
                with e:
                    self.failures.append((e.code, e.read()[:200]))
            except OSError as e:
                self.failures.append(repr(e))
            self.sent += 1


def test_reloads_under_load_drop_nothing_and_pin_running_playbooks(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Four reloads (SIGHUP good, API bad, SIGHUP bad, API good) while webhooks flow: every
    webhook answers 200; the bad ones leave the version as it was; the slow execution admitted
    first prints the old word; executions admitted after the last reload print the new one."""
    write(tmp_path, "one")
    config = tmp_path / "receiver.yml"
    config.write_text(
        f"store: '{redis_server.url[:-1]}7'\nworkers: 4\nrules: [rules.yml]\nplaybooks: [slow.yml, fast.yml]\n"
    )
    with redis.Redis.from_url(f"{redis_server.url[:-1]}7") as client:
        client.flushdb()
    with serving(config, tmp_path / "receiver.log") as (url, proc):
        load = Load(url)
        try:
            first = http("GET", f"{url}/api/v1/status")["config"]["version"]
            slow = http("POST", f"{url}/webhook", payload(alert("Slow")))["accepted"][0]["execution_id"]
            wait_for(
                "the slow step to start",
                lambda: http("GET", f"{url}/api/v1/executions/{slow}")["status"] == "running",
            )
            load.start()
            wait_for("some load", lambda: load.sent >= 20)

            def version() -> str:
                got: str = http("GET", f"{url}/api/v1/status")["config"]["last_reload"]["version"]
                return got

            def reloaded(trigger: str) -> dict[str, Any]:
                got: dict[str, Any] = http("GET", f"{url}/api/v1/status")["config"]["last_reload"]
                return got if got["trigger"] == trigger else {}

            write(tmp_path, "two")
            proc.send_signal(signal.SIGHUP)
            second = wait_for("the SIGHUP reload", lambda: reloaded("SIGHUP"))
            assert second["ok"] and second["changed"] and second["version"] != first

            write(tmp_path, "three", rules=RULES + "  - name: broken\n    playbook: nowhere\n")
            with pytest.raises(urllib.error.HTTPError) as refused:
                http("POST", f"{url}/-/reload")
            assert refused.value.code == 400
            refused.value.close()
            assert version() == second["version"]

            (tmp_path / "fast.yml").write_text("name: fast\nsteps: [{id: f, action: no-such-action}]\n")
            proc.send_signal(signal.SIGHUP)
            wait_for("the refused SIGHUP reload", lambda: (r := reloaded("SIGHUP")) and not r["ok"])
            assert version() == second["version"]

            write(tmp_path, "four")
            fourth = http("POST", f"{url}/-/reload")
            assert fourth["ok"] and fourth["changed"]
            after = http("POST", f"{url}/webhook", payload(alert("Fast", n="after")))["accepted"][0][
                "execution_id"
            ]
            wait_for("more load after the reloads", lambda: load.sent >= 60)
            load.stop.set()
            load.join(10)
            assert load.failures == []

            def ended(ident: str) -> dict[str, Any]:
                got: dict[str, Any] = http("GET", f"{url}/api/v1/executions/{ident}")
                return got if got["status"] in ("succeeded", "failed") else {}

            old = wait_for("the slow execution to end", lambda: ended(slow))
            assert old["status"] == "succeeded"
            assert old["steps"][0]["stdout"].strip() == "slow-one"
            new = wait_for("the execution admitted after the reloads", lambda: ended(after))
            assert new["steps"][0]["stdout"].strip() == "fast-four"
            assert new["playbook_version"] != old["playbook_version"]
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
            assert 'receiver_config_reloads_total{result="failure"} 2.0' in metrics
            assert 'receiver_config_reloads_total{result="success"} 2.0' in metrics
        finally:
            load.stop.set()
