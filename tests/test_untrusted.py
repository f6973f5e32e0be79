"""Alert content is untrusted text: labels and annotations reach playbooks as data, never as
templates or shell code, become environment variable names only escaped, and are bounded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from receiver.config import load_config
from receiver.engine import Engine
from receiver.errors import PayloadError
from receiver.metrics import Metrics
from receiver.models import MAX_ANNOTATION_VALUE, MAX_LABEL_VALUE, parse_payload
from receiver.states import ExecutionStatus
from receiver.store.base import Store
from tests.support import alert, payload, write_config

RULES = """
rules:
  - name: r
    matchers: ['alertname="A"']
    playbook: p
    params: {x: "{{ alert.labels.x }}"}
"""

PLAYBOOK = f"""name: p
steps:
  - id: show
    action: script
    with:
      command:
        - "{sys.executable}"
        - "-c"
        - "import json, os, sys; print(json.dumps({{'argv': sys.argv[1:], 'env': {{k: v for k, v in os.environ.items() if k.startswith(('ALERT_LABEL_', 'PARAM_'))}}}}))"
        - "{{{{ params.x }}}}"
        - "{{{{ alert.labels.x }}}} {{{{ alert.annotations.note }}}}"
"""

HOSTILE = [
    "{{ 7 * 7 }}{% for i in range(3) %}x{% endfor %}",
    "$(touch PWNED); `touch PWNED` && touch PWNED; rm -rf PWNED_DIR",
    "line one\nline two\r\n\ttabbed",
    "café 🔥 日本語",
    "before\x00after",
]


@pytest.mark.parametrize("value", HOSTILE)
async def test_hostile_label_values_stay_data(
    tmp_path: Path, store: Store, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Template syntax is not evaluated, shell syntax is one argv element and runs nothing,
    newlines and non-ASCII arrive intact, and a NUL byte becomes U+FFFD."""
    monkeypatch.chdir(tmp_path)
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"p": PLAYBOOK}))
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="t")
    labels = {"x": value, "weird-name.with/chars": "v"}
    report = await engine.ingest(parse_payload(payload(alert("A", annotations={"note": value}, **labels))))
    claimed = await store.claim("w", 2)
    assert claimed is not None and report.accepted
    await engine.execute(claimed, "w")
    done = await store.get(claimed.id)
    assert done is not None and done.status is ExecutionStatus.SUCCEEDED, done.error
    seen = json.loads(done.steps[0].stdout)
    expected = value.replace("\x00", "\ufffd")
    assert seen["argv"] == [expected, f"{expected} {expected}"]
    assert seen["env"]["ALERT_LABEL_X"] == expected and seen["env"]["PARAM_X"] == expected
    assert seen["env"]["ALERT_LABEL_WEIRD_NAME_WITH_CHARS"] == "v"
    assert not (tmp_path / "PWNED").exists()


def test_oversized_label_rejects_that_alert_only() -> None:
    """A label value past the bound rejects its alert, named; the other alerts of the payload stay."""
    big = alert("A", x="y" * (MAX_LABEL_VALUE + 1))
    parsed = parse_payload(payload(big, alert("A", x="fine")))
    assert [a.labels["x"] for a in parsed.alerts] == ["fine"]
    assert parsed.rejected[0].index == 0
    assert (
        f"label 'x' is {MAX_LABEL_VALUE + 1} characters long; at most {MAX_LABEL_VALUE}"
        in parsed.rejected[0].error
    )
    with pytest.raises(PayloadError, match="labels"):
        parse_payload(payload(alert("A", **{f"l{i}": "v" for i in range(200)})))


def test_oversized_annotation_is_cut_and_kept() -> None:
    """A long annotation (a stack trace in a description) is kept up to the bound, marked as cut."""
    parsed = parse_payload(
        payload(alert("A", annotations={"description": "z" * (MAX_ANNOTATION_VALUE + 10)}))
    )
    text = parsed.alerts[0].annotations["description"]
    assert text.startswith("z" * 100) and text.endswith(" [... 10 characters cut]")
