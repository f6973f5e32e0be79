"""The environment variables through which alert data reaches a script. Pure.

Values travel only as variable values, never as names or code: label names are reduced to
`[A-Z0-9_]` before they become part of a variable name, and the exact labels are also given as JSON.
"""

from __future__ import annotations

import json
import re

from receiver.execution import ExecutionMeta

_UNSAFE = re.compile(r"[^A-Z0-9_]")


def env_name(prefix: str, key: str) -> str:
    """`prefix` + the key upper-cased with every other character turned into `_`."""
    return prefix + _UNSAFE.sub("_", key.upper())


def alert_environment(meta: ExecutionMeta, *, step_id: str, execution_url: str) -> dict[str, str]:
    """Variables describing the alert, the params and the execution, for a step's process."""
    a = meta.alert
    ctx = a.context()
    env = {
        "ALERT_NAME": a.name,
        "ALERT_STATUS": a.status,
        "ALERT_FINGERPRINT": a.fingerprint,
        "ALERT_STARTS_AT": ctx["startsAt"],
        "ALERT_GENERATOR_URL": a.generator_url,
        "ALERT_LABELS": json.dumps(a.labels, sort_keys=True),
        "ALERT_ANNOTATIONS": json.dumps(a.annotations, sort_keys=True),
        "RECEIVER_EXECUTION_ID": meta.id,
        "RECEIVER_EXECUTION_URL": execution_url,
        "RECEIVER_RULE": meta.rule,
        "RECEIVER_PLAYBOOK": meta.playbook,
        "RECEIVER_STEP": step_id,
    }
    for k, v in a.labels.items():
        env.setdefault(env_name("ALERT_LABEL_", k), v)
    for k, v in meta.params.items():
        env.setdefault(env_name("PARAM_", k), v)
    return {k: v.replace("\x00", "") for k, v in env.items()}
