"""The benchmark keeps working: `python -m bench --quick` runs every scenario with tiny numbers
and writes sane figures. Whether they meet the targets is the benchmark's business, not a test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import PROJECT

pytestmark = pytest.mark.timeout(300)


def test_quick_benchmark_produces_every_figure(tmp_path: Path) -> None:
    """Every scenario reports its figures: ingest for receiver and floor (only 200s), scale out
    for 1 to 3 receivers, alert-to-action delays, engine and spawn rates, and RSS figures."""
    out = tmp_path / "results.json"
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ingest resend: req/s" in r.stdout and "alert-to-action" in r.stdout
    res = json.loads(out.read_text())
    for key in ("floor_resend", "floor_mixed", "receiver_resend", "receiver_mixed"):
        run = res["ingest"][key]
        assert run["requests"] > 0 and run["rps"] > 0 and set(run["codes"]) == {"200"}, (key, run)
        assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["p999_ms"]
    assert set(res["ingest"]["scale_out_resend"]) == {"1", "2", "3"}
    action = res["alert_to_action"]
    assert action["executions"] > 0 and 0 <= action["p50_ms"] <= action["p99_ms"]
    engine = res["engine"]
    assert engine["executions_per_s"] > 0 and engine["bare_spawns_per_s"] > 0
    memory = res["memory"]
    assert memory["rss_waiting_mb"] > 10 and memory["rss_after_storm_mb"] > 10
