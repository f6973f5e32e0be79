"""The actions a playbook step can name, by name."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from receiver.actions.base import Action, ActionContext, ActionResult
from receiver.actions.script import ScriptAction
from receiver.actions.wait_resolved import WaitResolvedAction

ACTIONS: Mapping[str, Action] = {a.name: a for a in (ScriptAction(), WaitResolvedAction())}


def action_params() -> dict[str, type[BaseModel]]:
    """Each action's parameter model, for validating playbooks when they load."""
    return {name: a.Params for name, a in ACTIONS.items()}


__all__ = ["ACTIONS", "Action", "ActionContext", "ActionResult", "action_params"]
