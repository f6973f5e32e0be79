"""Kubernetes actions through kubernetes_asyncio, with kubeconfig or in-cluster credentials:

- `kubernetes.rollout_restart`: the patch `kubectl rollout restart` makes (a
  `kubectl.kubernetes.io/restartedAt` annotation on the pod template, as a strategic merge
  patch) on a Deployment, StatefulSet or DaemonSet; optionally waits for the rollout.
- `kubernetes.delete_pod`: delete one pod (its controller makes a new one).
- `kubernetes.scale`: set the replicas of a Deployment or StatefulSet (the scale subresource).

The RBAC a deployment needs is exactly: patch on deployments, statefulsets, daemonsets (and
their scale subresource), get on them for `wait`, delete on pods.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from receiver.actions.base import ActionContext, ActionResult
from receiver.integrations import KubernetesSettings

if TYPE_CHECKING:  # the client library takes half a second to import: only when an action runs
    from kubernetes_asyncio.client.api_client import ApiClient
    from kubernetes_asyncio.client.exceptions import ApiException

# What the actions here call, as RBAC: (API group, resource) -> verbs. deploy/base/rbac.yaml grants
# exactly this (tests/test_deploy.py compares them).
RBAC: dict[tuple[str, str], frozenset[str]] = {
    ("apps", "deployments"): frozenset({"get", "patch"}),  # rollout_restart (get: wait)
    ("apps", "statefulsets"): frozenset({"get", "patch"}),
    ("apps", "daemonsets"): frozenset({"get", "patch"}),
    ("apps", "deployments/scale"): frozenset({"patch"}),  # scale
    ("apps", "statefulsets/scale"): frozenset({"patch"}),
    ("", "pods"): frozenset({"delete"}),  # delete_pod
}
# How often a rollout's status is read while waiting for it.
ROLLOUT_POLL_S = 2.0
_DNS_NAME = r"^(\{\{.*\}\}|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$"


class KubernetesError(Exception):
    """Credentials could not be loaded."""


@asynccontextmanager
async def api_client(settings: KubernetesSettings | None) -> AsyncIterator[ApiClient]:
    """An API client with the configured kubeconfig, or the pod's service account."""
    from kubernetes_asyncio import client, config
    from kubernetes_asyncio.client.api_client import ApiClient
    from kubernetes_asyncio.config.config_exception import ConfigException

    cfg = client.Configuration()
    try:
        if settings is not None and settings.kubeconfig is not None:
            await config.load_kube_config(
                config_file=settings.kubeconfig,
                context=settings.context,
                client_configuration=cfg,
                persist_config=False,
            )
        else:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as e:
        raise KubernetesError(f"kubernetes credentials: {e}") from None
    async with ApiClient(configuration=cfg) as api:
        yield api


def _api_error(e: ApiException, what: str) -> ActionResult:
    reason = e.reason or ""
    try:
        import json

        reason = json.loads(e.body or b"").get("message") or reason
    except (ValueError, TypeError, AttributeError):
        pass
    return ActionResult(ok=False, error=f"{what}: HTTP {e.status} {reason}".strip())


async def _guarded(ctx: ActionContext, what: str, timeout_s: float, call: Any) -> ActionResult:
    """Run `call(api)` with a client, turning API, credential and time errors into results."""
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        async with api_client(ctx.integrations.kubernetes) as api:
            result: ActionResult = await asyncio.wait_for(call(api), timeout_s)
            return result
    except KubernetesError as e:
        return ActionResult(ok=False, error=str(e))
    except ApiException as e:
        return _api_error(e, what)
    except TimeoutError:
        return ActionResult(ok=False, error=f"{what}: not done within {timeout_s:g}s", timed_out=True)
    except OSError as e:  # connection refused, DNS, TLS
        return ActionResult(ok=False, error=f"{what}: {e}")


class RolloutRestartParams(BaseModel):
    """`with:` of a kubernetes.rollout_restart step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["Deployment", "StatefulSet", "DaemonSet"] = "Deployment"
    namespace: str = Field(pattern=_DNS_NAME)
    name: str = Field(pattern=_DNS_NAME)
    wait: bool = False  # wait until the new pods are all updated and available


def restart_patch(now: datetime) -> dict[str, Any]:
    """The patch `kubectl rollout restart` sends."""
    stamp = now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}


def rollout_done(kind: str, obj: Any) -> bool:
    """Whether a workload's status says its latest template is fully rolled out."""
    meta, spec, status = obj.metadata, obj.spec, obj.status
    if status is None or (status.observed_generation or 0) < (meta.generation or 0):
        return False
    if kind == "DaemonSet":
        want = status.desired_number_scheduled or 0
        return bool((status.updated_number_scheduled or 0) >= want and (status.number_available or 0) >= want)
    want = spec.replicas if spec.replicas is not None else 1
    ready = status.available_replicas if kind == "Deployment" else status.ready_replicas
    return bool((status.updated_replicas or 0) >= want and (ready or 0) >= want)


class RolloutRestartAction:
    """Patches the pod template's restartedAt annotation; outputs.restarted_at."""

    name: ClassVar[str] = "kubernetes.rollout_restart"
    Params: ClassVar[type[BaseModel]] = RolloutRestartParams

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """Patch, then (with wait) poll the workload until its rollout is complete."""
        assert isinstance(params, RolloutRestartParams)
        p = params
        what = f"{p.kind.lower()} {p.namespace}/{p.name}"

        async def call(api: ApiClient) -> ActionResult:
            from kubernetes_asyncio import client

            apps = client.AppsV1Api(api)
            patch = restart_patch(datetime.now(UTC))
            method = {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}[
                p.kind
            ]
            await getattr(apps, f"patch_namespaced_{method}")(p.name, p.namespace, patch)
            stamp = patch["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            out = {"restarted_at": stamp}
            if p.wait:
                read = getattr(apps, f"read_namespaced_{method}")
                while True:  # the API offers watch; a poll every ROLLOUT_POLL_S is enough here
                    if rollout_done(p.kind, await read(p.name, p.namespace)):
                        break
                    await asyncio.sleep(ROLLOUT_POLL_S)
                return ActionResult(ok=True, stdout=f"{what} restarted and rolled out\n", outputs=out)
            return ActionResult(ok=True, stdout=f"{what} restarted\n", outputs=out)

        return await _guarded(ctx, f"restart {what}", timeout_s, call)


class DeletePodParams(BaseModel):
    """`with:` of a kubernetes.delete_pod step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(pattern=_DNS_NAME)
    name: str = Field(pattern=_DNS_NAME)
    grace_period: int | None = Field(default=None, ge=0)  # seconds; default: the pod's own


class DeletePodAction:
    """Deletes one pod."""

    name: ClassVar[str] = "kubernetes.delete_pod"
    Params: ClassVar[type[BaseModel]] = DeletePodParams

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """DELETE the pod."""
        assert isinstance(params, DeletePodParams)
        p = params

        async def call(api: ApiClient) -> ActionResult:
            from kubernetes_asyncio import client

            core = client.CoreV1Api(api)
            if p.grace_period is None:
                await core.delete_namespaced_pod(p.name, p.namespace)
            else:
                await core.delete_namespaced_pod(p.name, p.namespace, grace_period_seconds=p.grace_period)
            return ActionResult(ok=True, stdout=f"pod {p.namespace}/{p.name} deleted\n")

        return await _guarded(ctx, f"delete pod {p.namespace}/{p.name}", timeout_s, call)


class ScaleParams(BaseModel):
    """`with:` of a kubernetes.scale step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    namespace: str = Field(pattern=_DNS_NAME)
    name: str = Field(pattern=_DNS_NAME)
    replicas: int = Field(ge=0, le=10_000)


class ScaleAction:
    """Sets the replicas through the scale subresource; outputs.replicas."""

    name: ClassVar[str] = "kubernetes.scale"
    Params: ClassVar[type[BaseModel]] = ScaleParams

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """PATCH the scale subresource."""
        assert isinstance(params, ScaleParams)
        p = params
        what = f"{p.kind.lower()} {p.namespace}/{p.name}"

        async def call(api: ApiClient) -> ActionResult:
            from kubernetes_asyncio import client

            apps = client.AppsV1Api(api)
            method = "deployment" if p.kind == "Deployment" else "stateful_set"
            body = {"spec": {"replicas": p.replicas}}
            await getattr(apps, f"patch_namespaced_{method}_scale")(p.name, p.namespace, body)
            return ActionResult(
                ok=True, stdout=f"{what} scaled to {p.replicas}\n", outputs={"replicas": p.replicas}
            )

        return await _guarded(ctx, f"scale {what}", timeout_s, call)
