"""The actions a playbook step can name, by name."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from receiver.actions.alertmanager import SilenceAction
from receiver.actions.base import Action, ActionContext, ActionResult
from receiver.actions.grafana import GrafanaAnnotateAction
from receiver.actions.http import HttpAction
from receiver.actions.kubernetes import DeletePodAction, RolloutRestartAction, ScaleAction
from receiver.actions.notify import NotifyAction
from receiver.actions.script import ScriptAction
from receiver.actions.service import DockerRestartAction, SystemdRestartAction
from receiver.actions.wait_resolved import WaitResolvedAction
from receiver.approval import APPROVAL, ApprovalParams

ACTIONS: Mapping[str, Action] = {
    a.name: a
    for a in (
        ScriptAction(),
        WaitResolvedAction(),
        HttpAction(),
        NotifyAction(),
        GrafanaAnnotateAction(),
        SilenceAction(),
        SystemdRestartAction(),
        DockerRestartAction(),
        RolloutRestartAction(),
        DeletePodAction(),
        ScaleAction(),
    )
}


def action_params() -> dict[str, type[BaseModel]]:
    """Each step kind's parameter model, for validating playbooks when they load (approval too)."""
    return {**{name: a.Params for name, a in ACTIONS.items()}, APPROVAL: ApprovalParams}


__all__ = ["ACTIONS", "Action", "ActionContext", "ActionResult", "action_params"]
