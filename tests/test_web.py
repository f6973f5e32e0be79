"""The web view in a real headless browser (Debian's chromium, driven by Playwright) against a
real `receiver serve` process running the shipped demo rules and playbooks on SQLite, behind an
operator's API token. Screenshots land in test-artifacts/web/ (or $RECEIVER_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import PROJECT, alert, payload, serving
from tests.test_e2e_alertmanager import wait_for

pytestmark = pytest.mark.timeout(120)

TOKEN = "web-view-test-token"
VIEWER_TOKEN = "web-view-viewer-token"
ARTIFACTS = Path(os.environ.get("RECEIVER_TEST_ARTIFACTS", PROJECT / "test-artifacts")) / "web"


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed (Debian: apt-get install chromium)")
    return found


class Served:
    """A `receiver serve` process and the calls the test makes to it with the token."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The shipped config, plus an operator token named alice, on a fresh SQLite file."""
    (tmp_path / "alice").write_text(TOKEN)
    (tmp_path / "bob").write_text(VIEWER_TOKEN)
    shipped = yaml.safe_load((PROJECT / "receiver.yml").read_text())
    shipped.update(
        store=f"sqlite:///{tmp_path / 'r.db'}",
        shutdown_grace="1s",
        rules=[f"{PROJECT}/rules/*.yml"],
        playbooks=[f"{PROJECT}/playbooks/*.yml"],
        auth={
            "api_tokens": [
                {"name": "alice", "token_file": str(tmp_path / "alice"), "role": "operator"},
                {"name": "bob", "token_file": str(tmp_path / "bob"), "role": "viewer"},
            ]
        },
    )
    config = tmp_path / "receiver.yml"
    config.write_text(yaml.safe_dump(shipped))
    with serving(config, tmp_path / "receiver.log") as (url, _):
        yield Served(url)


@pytest.fixture
def page(served: Served) -> Iterator[Any]:
    """A chromium page that fails the test on any script error or refused inline code."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium())
        pg = browser.new_page(viewport={"width": 1280, "height": 860})
        pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        yield pg
        browser.close()
    # A 401 before the token is entered is expected and logged by the browser as a failed load.
    assert [m for m in problems if "401" not in m] == []


def demo_alert(target: str, **labels: str) -> dict[str, Any]:
    return payload(alert("ReceiverDemo", target=target, **labels))


def test_operator_sees_a_run_live_approves_it_and_reads_the_stats(served: Served, page: Any) -> None:
    """Token prompt, list, execution page with its DAG waiting at the approval, Approve, the
    run going on to wait for the alert, the resolution ending it succeeded, then the stats and
    the rules page; the approver recorded is the token's owner."""
    from playwright.sync_api import expect

    ident = served.call("POST", "/webhook", demo_alert("web-1"))["accepted"][0]["execution_id"]
    page.goto(served.url + "/")
    expect(page.locator("#token-dialog")).to_be_visible()
    page.fill("#token-input", TOKEN)
    page.click("#token-form button")
    row = page.locator(f'#executions tr[data-id="{ident}"]')
    expect(row).to_have_attribute("data-status", "waiting_approval", timeout=15000)
    expect(page.locator("#waiting")).to_contain_text("1 waiting for approval")
    page.screenshot(path=str(ARTIFACTS / "1-list.png"))
    served.call("POST", "/webhook", demo_alert("web-1"))  # the same alert again: a duplicate

    row.get_by_role("link", name="ReceiverDemo").click()
    approve = page.locator('.node[data-step="approve"]')
    expect(approve).to_have_attribute("data-status", "waiting_approval")
    expect(page.locator('.node[data-step="verify"]')).to_have_attribute("data-status", "succeeded")
    expect(page.locator('.node[data-step="fix"]')).to_have_attribute("data-status", "pending")
    # report, probe -> verify -> approve -> fix -> cleared: five edges
    expect(page.locator(".dag svg path")).to_have_count(5)
    page.locator('.node[data-step="report"]').click()
    expect(page.locator("main pre").first).to_contain_text("alert ReceiverDemo for web-1")
    page.wait_for_timeout(1500)  # a refresh redraws the steps: the keyboard focus stays on the step
    assert page.evaluate("document.activeElement.dataset.step") == "report"
    page.screenshot(path=str(ARTIFACTS / "2-waiting-approval.png"), full_page=True)

    page.fill("#comment", "looks right")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator('.node[data-step="fix"]')).to_have_attribute(
        "data-status", "succeeded", timeout=15000
    )
    expect(page.locator('.node[data-step="cleared"]')).to_have_attribute("data-status", "running")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "3-approved-waiting-for-resolution.png"), full_page=True)

    resolved = demo_alert("web-1")
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    resolved["alerts"][0].update(status="resolved", endsAt=now)
    served.call("POST", "/webhook", resolved)
    expect(page.locator("main h1 .badge")).to_have_text("succeeded", timeout=15000)
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "4-succeeded.png"), full_page=True)
    decision = served.call("GET", f"/api/v1/executions/{ident}")["approval"]["decision"]
    assert decision["by"] == "alice" and decision["comment"] == "looks right"

    # Suppressed counts reach the store within 5 s and a report is kept 10 s: wait for one that
    # has the duplicate (the page asks for the same report, since=24h).
    wait_for(
        "the duplicate in the stats",
        lambda: served.call("GET", "/api/v1/stats?since=24h")["totals"]["suppressed"].get("duplicate") == 1,
    )
    page.get_by_role("link", name="Stats").click()
    expect(page.locator(".cards")).to_contain_text("100%")  # succeeded, and recovered after it started
    expect(page.get_by_role("row", name="receiver-demo")).to_contain_text("duplicate 1", timeout=15000)
    page.screenshot(path=str(ARTIFACTS / "5-stats.png"), full_page=True)

    page.get_by_role("link", name="Rules & playbooks").click()
    expect(page.get_by_role("row", name="demo-report Walk")).to_contain_text("approve (approval ← verify)")
    page.screenshot(path=str(ARTIFACTS / "6-rules-and-playbooks.png"), full_page=True)


def test_markup_in_alert_labels_is_shown_as_text(served: Served, page: Any) -> None:
    """A label holding HTML shows as its literal text; no element is made from it."""
    from playwright.sync_api import expect

    markup = '<img src=x onerror="document.title=1"><b id="injected">bold</b>'
    ident = served.call("POST", "/webhook", demo_alert("healthy", note=markup))["accepted"][0]["execution_id"]
    page.goto(served.url + "/")
    page.fill("#token-input", TOKEN)
    page.click("#token-form button")
    page.goto(f"{served.url}/ui/#/executions/{ident}")
    cell = page.get_by_role("row", name="note").locator("td")
    expect(cell).to_have_text(markup)
    assert page.locator("#injected").count() == 0
    assert page.title() == "receiver"


def test_a_viewer_sees_the_execution_without_the_buttons(served: Served, page: Any) -> None:
    """With a viewer's token the execution page shows everything but offers no action, saying
    why (the API would refuse them with 403)."""
    from playwright.sync_api import expect

    ident = served.call("POST", "/webhook", demo_alert("web-2"))["accepted"][0]["execution_id"]
    page.goto(f"{served.url}/ui/#/executions/{ident}")
    page.fill("#token-input", VIEWER_TOKEN)
    page.click("#token-form button")
    expect(page.locator('.node[data-step="approve"]')).to_have_attribute(
        "data-status", "waiting_approval", timeout=15000
    )
    expect(page.locator(".actions")).to_contain_text("Read-only: bob has a viewer's token")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)


def test_assets_are_served_with_a_strict_policy_and_nothing_else_is(served: Served) -> None:
    """/ leads to /ui/; the three files come with a Content-Security-Policy that forbids inline
    code; any other name under /ui/ is a 404."""
    with urllib.request.urlopen(served.url + "/", timeout=5) as resp:
        assert resp.url.endswith("/ui/")
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert b'<script src="/ui/app.js" defer></script>' in resp.read()
    for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css")]:
        with urllib.request.urlopen(f"{served.url}/ui/{name}", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith(kind)
    for name in ["../receiver.yml", "%0D%0Aevil", "app.py"]:
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{served.url}/ui/{name}", timeout=5)
        assert missing.value.code == 404
        missing.value.close()
