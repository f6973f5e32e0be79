"""Who may call what: webhook authentication (as Alertmanager's http_config sends it: a Bearer
token or basic auth) and API tokens with roles (viewer < operator < admin). Secrets come from
files, re-read when the file changes, and are compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from receiver.integrations import SecretError, read_secret


class Role(IntEnum):
    """API roles; each can do what the ones below it can."""

    VIEWER = 1  # read history, rules, playbooks, stats
    OPERATOR = 2  # approve, reject, cancel, retry
    ADMIN = 3  # reload


class BasicAuthSettings(BaseModel):
    """`auth.webhook.basic`: a user name and a file holding the password."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1)
    password_file: str


class WebhookAuthSettings(BaseModel):
    """`auth.webhook`: what Alertmanager must send (its webhook_config http_config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bearer_token_file: str | None = None  # Alertmanager: authorization: {credentials_file: ...}
    basic: BasicAuthSettings | None = None  # Alertmanager: basic_auth: {username, password_file}

    @model_validator(mode="after")
    def _one(self) -> WebhookAuthSettings:
        if (self.bearer_token_file is None) == (self.basic is None):
            raise ValueError("give exactly one of bearer_token_file or basic")
        return self


class ApiTokenSettings(BaseModel):
    """One entry of `auth.api_tokens`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", max_length=100)  # who this is; recorded with approvals
    token_file: str
    role: Literal["viewer", "operator", "admin"]


class AuthSettings(BaseModel):
    """`auth:`. Without `webhook`, /webhook is open; without `api_tokens`, the API is open."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: WebhookAuthSettings | None = None
    api_tokens: list[ApiTokenSettings] = Field(default_factory=list)


class TlsSettings(BaseModel):
    """`tls:`: serve HTTPS; with client_ca_file, also require a client certificate it signed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


class _Secret:
    """A secret file's content, read again only when the file changes (a rotated Secret)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._value = ""

    def value(self) -> str:
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._value = read_secret(self.path)
            self._stamp = stamp
        return self._value


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class Identity:
    """Who called the API, and with which role."""

    name: str
    role: Role


class Authenticator:
    """Checks Authorization headers against the configured secrets."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        hook = settings.webhook
        self._bearer = _Secret(hook.bearer_token_file) if hook and hook.bearer_token_file else None
        self._basic = (
            (hook.basic.username, _Secret(hook.basic.password_file)) if hook and hook.basic else None
        )
        self._tokens = [
            (t.name or f"token {i + 1}", Role[t.role.upper()], _Secret(t.token_file))
            for i, t in enumerate(settings.api_tokens)
        ]

    @property
    def webhook_required(self) -> bool:
        """Whether /webhook needs credentials."""
        return self._bearer is not None or self._basic is not None

    @property
    def api_required(self) -> bool:
        """Whether the API needs a token."""
        return bool(self._tokens)

    def check(self) -> list[str]:
        """Every secret file that cannot be read now (for load-time errors)."""
        secrets = [s for s in (self._bearer, self._basic[1] if self._basic else None) if s is not None]
        problems = []
        for s in [*secrets, *(t[2] for t in self._tokens)]:
            try:
                s.value()
            except (SecretError, OSError) as e:
                problems.append(str(e) if isinstance(e, SecretError) else f"cannot read secret file {s.path}")
        return problems

    def webhook_ok(self, header: str | None) -> bool:
        """Whether the webhook's Authorization header carries the configured credentials."""
        if not self.webhook_required:
            return True
        scheme, _, value = (header or "").partition(" ")
        try:
            if self._bearer is not None:
                return scheme.lower() == "bearer" and _same(value.strip(), self._bearer.value())
            assert self._basic is not None
            if scheme.lower() != "basic":
                return False
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            user_ok = _same(user, self._basic[0])
            return _same(password, self._basic[1].value()) and user_ok
        except (binascii.Error, UnicodeDecodeError, SecretError, OSError):
            return False

    def api_identity(self, header: str | None) -> Identity | None:
        """The token's owner and role, or None when the header has no known token."""
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        found = None
        for name, role, secret in self._tokens:
            try:
                if _same(value.strip(), secret.value()) and found is None:
                    found = Identity(name, role)  # keep comparing: time does not tell which
            except (SecretError, OSError):
                continue
        return found
