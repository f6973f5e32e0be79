"""The outside systems actions talk to, as configured in the main config: named notifiers
(Apprise URLs), Grafana, Alertmanager and Kubernetes, and the outcome every execution reports.

Secrets (tokens, notifier URLs that embed them) come from files, read when they are used so a
rotated Kubernetes Secret takes effect without a restart; they never reach logs or history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from receiver.durations import parse_duration
from receiver.redact import remember

# How long a call to Grafana, Alertmanager or a notifier may take.
DEFAULT_CALL_TIMEOUT_S = 10.0


class SecretError(Exception):
    """A secret file could not be read; names the file, never its content."""


def read_secret(path: str) -> str:
    """The stripped content of a secret file."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise SecretError(f"cannot read secret file {path}: {e.strerror or e}") from None
    if not text:
        raise SecretError(f"secret file {path} is empty")
    for line in text.splitlines():  # a file of URLs holds one secret per line
        remember(line)
    remember(text)
    return text


class NotifierSettings(BaseModel):
    """`notifiers.<name>`: where a notification goes, as Apprise URLs (https://appriseit.com)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str] = Field(default_factory=list)
    urls_file: str | None = None  # one URL per line; for URLs that hold a token

    @model_validator(mode="after")
    def _some(self) -> NotifierSettings:
        if not self.urls and self.urls_file is None:
            raise ValueError("give urls or urls_file")
        return self

    def all_urls(self) -> list[str]:
        """The inline URLs and those of urls_file (read now); SecretError if it cannot be read.

        Every URL counts as a secret (they often embed a token)."""
        for url in self.urls:
            remember(url)
        urls = list(self.urls)
        if self.urls_file is not None:
            lines = read_secret(self.urls_file).splitlines()
            urls += [u.strip() for u in lines if u.strip() and not u.strip().startswith("#")]
        return urls


class _Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    token_file: str | None = None  # sent as `Authorization: Bearer <token>`
    timeout: float = DEFAULT_CALL_TIMEOUT_S

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)

    def headers(self) -> dict[str, str]:
        """Authorization header from token_file, read now."""
        if self.token_file is None:
            return {}
        return {"Authorization": f"Bearer {read_secret(self.token_file)}"}

    def endpoint(self, path: str) -> str:
        """The URL of an API path."""
        return self.url.rstrip("/") + path


class GrafanaSettings(_Endpoint):
    """`integrations.grafana`: where annotations go (a service account token with annotations:write)."""


class AlertmanagerSettings(_Endpoint):
    """`integrations.alertmanager`: the Alertmanager whose v2 API silences alerts."""


class KubernetesSettings(BaseModel):
    """`integrations.kubernetes`: credentials for the Kubernetes actions: a kubeconfig file, or
    (`in_cluster: true`, or nothing said) the pod's service account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    in_cluster: bool = False
    kubeconfig: str | None = None
    context: str | None = None

    @model_validator(mode="after")
    def _one(self) -> KubernetesSettings:
        if self.in_cluster and self.kubeconfig is not None:
            raise ValueError("give in_cluster: true or a kubeconfig, not both")
        return self


class IntegrationSettings(BaseModel):
    """`integrations:`: the systems actions call besides notifiers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grafana: GrafanaSettings | None = None
    alertmanager: AlertmanagerSettings | None = None
    kubernetes: KubernetesSettings | None = None


class OutcomeSettings(BaseModel):
    """`outcome:`: what every execution reports when it ends, without its playbook saying so."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notify: list[str] = Field(default_factory=list)  # notifier names
    annotate: bool = False  # a Grafana annotation covering the execution
    attempts: int = Field(default=3, ge=1, le=20)
    backoff: float = 2.0

    @field_validator("backoff", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


@dataclass(frozen=True)
class Integrations:
    """Everything configured that actions may call."""

    notifiers: dict[str, NotifierSettings] = field(default_factory=dict)
    grafana: GrafanaSettings | None = None
    alertmanager: AlertmanagerSettings | None = None
    kubernetes: KubernetesSettings | None = None
    outcome: OutcomeSettings = field(default_factory=OutcomeSettings)

    @property
    def reports_outcome(self) -> bool:
        """Whether `outcome:` sends anything when an execution ends."""
        return bool(self.outcome.notify) or (self.outcome.annotate and self.grafana is not None)
