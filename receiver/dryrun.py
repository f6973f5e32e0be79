"""What a playbook would do for an alert, without doing it. Pure.

Templates and `when` conditions are evaluated against the alert and params; anything that
depends on the output of an earlier step can only be known at run time, and is said so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from receiver.approval import APPROVAL
from receiver.errors import TemplateError
from receiver.models import Alert
from receiver.playbook import Playbook
from receiver.templates import render_tree


@dataclass(frozen=True)
class PlannedStep:
    """One step as the dry run sees it."""

    id: str
    action: str
    needs: tuple[str, ...]
    with_: Any  # rendered parameters, or None when they depend on earlier steps
    runs: bool | None  # False: `when` is false now; None: `when` depends on earlier steps
    note: str = ""


def _unknowable(e: TemplateError) -> bool:
    return "steps" in e.cause or "'dict object' has no attribute" in e.cause


def dry_run(playbook: Playbook, alert: Alert, params: dict[str, str], rule: str) -> list[PlannedStep]:
    """Render each step's parameters and condition for this alert, in file order."""
    context: dict[str, Any] = {
        "alert": alert.context(),
        "params": params,
        "rule": {"name": rule},
        "playbook": {"name": playbook.name},
        "execution": {"id": "(dry run)", "url": ""},
        "steps": {},
    }
    out: list[PlannedStep] = []
    for step in playbook.steps:
        runs: bool | None = True
        note = ""
        if step.when is not None:
            try:
                runs = bool(step.when.evaluate(context))
                note = "" if runs else f"skipped: `{step.when.source}` is false"
            except TemplateError as e:
                runs = None
                note = f"`{step.when.source}` is decided at run time" if _unknowable(e) else f"error: {e}"
        if step.action == APPROVAL:
            wait = "waits for an operator to approve or reject"
            note = f"{note}; {wait}" if note else wait
        try:
            rendered = render_tree(step.with_, context)
        except TemplateError as e:
            rendered = None
            extra = "parameters use earlier steps' output" if _unknowable(e) else f"error: {e}"
            note = f"{note}; {extra}" if note else extra
        out.append(
            PlannedStep(
                id=step.id,
                action=step.action,
                needs=playbook.plan.needs[step.id],
                with_=rendered,
                runs=runs,
                note=note,
            )
        )
    return out
