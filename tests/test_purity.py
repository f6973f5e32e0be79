"""The pure core imports no I/O: no aiohttp, redis, asyncio or subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = [
    "receiver.matchers",
    "receiver.rules",
    "receiver.dedup",
    "receiver.playbook",
    "receiver.planner",
    "receiver.dryrun",
    "receiver.states",
    "receiver.execution",
    "receiver.models",
    "receiver.templates",
    "receiver.durations",
    "receiver.environment",
    "receiver.approval",
    "receiver.stats",
    "receiver.routetest",
]
FORBIDDEN = ["aiohttp", "redis", "asyncio", "subprocess", "sqlite3"]


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io(module: str) -> None:
    """Importing a core module in a fresh interpreter loads none of the I/O libraries."""
    code = f"import sys, {module}; print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"
