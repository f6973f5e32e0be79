"""The main config file and everything it points at (rules and playbooks), loaded at start and
at each reload (reload.py).

Every problem found is reported together, each naming its file, line and key; a config with
any error is refused whole.
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from receiver.actions import action_params
from receiver.auth import Authenticator, AuthSettings, TlsSettings
from receiver.durations import parse_duration
from receiver.errors import ConfigError, ConfigErrors
from receiver.integrations import (
    Integrations,
    IntegrationSettings,
    NotifierSettings,
    OutcomeSettings,
    SecretError,
)
from receiver.playbook import Playbook, definition_of, load_playbook
from receiver.rules import Rule, load_rules
from receiver.store.base import StoreLimits
from receiver.yamlsource import Document, load_documents

DEFAULT_LISTEN = "0.0.0.0:9095"
DEFAULT_MAX_BODY = 1024 * 1024


class WebhookSettings(BaseModel):
    """`webhook:`: limits of the ingest endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, gt=0)


class HistorySettings(BaseModel):
    """`history:`: how long and how many executions are kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention: float = 7 * 86400.0
    max_executions: int = Field(default=100_000, gt=0)
    output_limit_bytes: int = Field(default=16384, gt=0)

    @field_validator("retention", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


class DedupSettings(BaseModel):
    """`dedup:`: how long a processed notification is remembered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    idempotency_ttl: float = 7 * 86400.0

    @field_validator("idempotency_ttl", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


class Settings(BaseModel):
    """The main config file. Every key is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = DEFAULT_LISTEN
    store: str | None = None
    external_url: str = ""
    rules: list[str] = Field(default_factory=lambda: ["rules/*.yml"])
    playbooks: list[str] = Field(default_factory=lambda: ["playbooks/*.yml"])
    workers: int = Field(default=4, ge=1, le=256)
    # At most this many executions queued or running at once (all replicas); past it, 503.
    max_queued: int = Field(default=10_000, ge=1)
    # A running execution whose worker has been silent this long is taken over by another.
    reclaim_after: float = 30.0
    # On SIGTERM, how long running steps may take to finish before they are stopped and handed
    # back; below Kubernetes' default terminationGracePeriodSeconds of 30s.
    shutdown_grace: float = 25.0
    # Reload by itself when the content of a config, rules or playbook file changes (or a file is
    # added or removed), looking this often; 0: only on SIGHUP or POST /-/reload.
    watch: float = 0.0
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    notifiers: dict[str, NotifierSettings] = Field(default_factory=dict)
    integrations: IntegrationSettings = Field(default_factory=IntegrationSettings)
    outcome: OutcomeSettings = Field(default_factory=OutcomeSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tls: TlsSettings | None = None

    @field_validator("watch", mode="before")
    @classmethod
    def _watch(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("shutdown_grace", mode="before")
    @classmethod
    def _grace(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("reclaim_after", mode="before")
    @classmethod
    def _reclaim(cls, v: Any) -> float:
        seconds = parse_duration(v)
        if seconds < 2:
            raise ValueError("must be at least 2s: workers heartbeat every second")
        return seconds

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT, got {v!r}")
        return v

    def host_port(self) -> tuple[str, int]:
        """The listen address split into host and port."""
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    def for_actions(self) -> Integrations:
        """What actions may call."""
        return Integrations(
            notifiers=dict(self.notifiers),
            grafana=self.integrations.grafana,
            alertmanager=self.integrations.alertmanager,
            kubernetes=self.integrations.kubernetes,
            outcome=self.outcome,
        )

    def with_files_from(self, base: Path) -> Settings:
        """The same settings with relative secret and kubeconfig paths taken from `base`."""

        def at(p: str | None) -> str | None:
            if p is None or Path(p).is_absolute():
                return p
            return str(base / Path(p).expanduser())

        update: dict[str, Any] = {
            "notifiers": {
                k: n.model_copy(update={"urls_file": at(n.urls_file)}) if n.urls_file else n
                for k, n in self.notifiers.items()
            }
        }
        found: dict[str, Any] = {}
        for key in ("grafana", "alertmanager"):
            ep = getattr(self.integrations, key)
            if ep is not None and ep.token_file is not None:
                found[key] = ep.model_copy(update={"token_file": at(ep.token_file)})
        kube = self.integrations.kubernetes
        if kube is not None and kube.kubeconfig is not None:
            found["kubernetes"] = kube.model_copy(update={"kubeconfig": at(kube.kubeconfig)})
        update["integrations"] = self.integrations.model_copy(update=found)
        hook = self.auth.webhook
        if hook is not None:
            basic = (
                hook.basic.model_copy(update={"password_file": at(hook.basic.password_file)})
                if hook.basic
                else None
            )
            hook = hook.model_copy(update={"bearer_token_file": at(hook.bearer_token_file), "basic": basic})
        tokens = [t.model_copy(update={"token_file": at(t.token_file)}) for t in self.auth.api_tokens]
        update["auth"] = self.auth.model_copy(update={"webhook": hook, "api_tokens": tokens})
        if self.tls is not None:
            update["tls"] = self.tls.model_copy(
                update={
                    "cert_file": at(self.tls.cert_file),
                    "key_file": at(self.tls.key_file),
                    "client_ca_file": at(self.tls.client_ca_file),
                }
            )
        return self.model_copy(update=update)

    def limits(self) -> StoreLimits:
        """Retention and dedup limits for the store."""
        return StoreLimits(
            retention_s=self.history.retention,
            max_executions=self.history.max_executions,
            idempotency_ttl_s=self.dedup.idempotency_ttl,
            reclaim_after_s=self.reclaim_after,
            max_queued=self.max_queued,
        )


@dataclass(frozen=True)
class Config:
    """Everything loaded: settings, rules in order, playbooks by name, and where they came from."""

    settings: Settings
    rules: tuple[Rule, ...]
    playbooks: dict[str, Playbook]
    path: Path | None
    store_url: str
    # A digest of every document loaded (main config, rules, playbooks): equal files, equal version.
    version: str = ""


def _expand(patterns: list[str], base: Path, key: str, errors: list[ConfigError], file: str) -> list[Path]:
    paths: list[Path] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        hits = sorted(glob.glob(full))
        if not hits:
            errors.append(ConfigError(f"{key}: {pattern!r} matches no file", file=file))
        paths.extend(Path(h) for h in hits)
    return paths


def watched_files(config: Config) -> list[Path]:
    """The files a config was loaded from, as its patterns match them now (new files included)."""
    if config.path is None:
        return []
    base = config.path.parent
    found: list[Path] = [config.path]
    for patterns in (config.settings.rules, config.settings.playbooks):
        found.extend(_expand(patterns, base, "", [], ""))
    return found


def load_config(
    path: Path | None, *, store_override: str | None = None, listen_override: str | None = None
) -> Config:
    """Load the main config (or the defaults when `path` is None) with its rules and playbooks.

    Raises ConfigErrors listing every problem found.
    """
    errors: list[ConfigError] = []
    base = path.parent if path else Path.cwd()
    file = str(path) if path else "(defaults)"
    data: Any = {}
    doc = Document(file=file, data={})
    if path is not None:
        docs = load_documents(path)
        doc = docs[0] if docs else doc
        data = doc.data if doc.data is not None else {}
    digest = hashlib.sha256(definition_of(data)[0].encode())
    if listen_override is not None and isinstance(data, dict):
        data = {**data, "listen": listen_override}
    try:
        settings = Settings.model_validate(data).with_files_from(base)
    except ValidationError as e:
        raise ConfigErrors(doc.errors_from(e)) from e
    errors.extend(_check_integrations(settings, file))

    rules: list[Rule] = []
    for rpath in _expand(settings.rules, base, "rules", errors, file):
        try:
            for d in load_documents(rpath):
                digest.update(definition_of(d.data)[0].encode())
                got, errs = load_rules(d)
                rules.extend(got)
                errors.extend(errs)
        except ConfigError as e:
            errors.append(e)

    actions = action_params()
    playbooks: dict[str, Playbook] = {}
    broken: set[str] = set()  # playbooks that failed to load: their rules need no second error
    for ppath in _expand(settings.playbooks, base, "playbooks", errors, file):
        try:
            for d in load_documents(ppath):
                digest.update(definition_of(d.data)[0].encode())
                pb, errs = load_playbook(d, actions)
                errors.extend(errs)
                if pb is None:
                    if isinstance(d.data, dict) and isinstance(d.data.get("name"), str):
                        broken.add(d.data["name"])
                    continue
                if pb.name in playbooks:
                    errors.append(
                        ConfigError(
                            f"playbook {pb.name!r} is also defined at {playbooks[pb.name].source}",
                            file=d.file,
                        )
                    )
                playbooks[pb.name] = pb
        except ConfigError as e:
            errors.append(e)

    names: dict[str, str] = {}
    for r in rules:
        if r.name in names:
            errors.append(ConfigError(f"rule {r.name!r} is also defined at {names[r.name]}", where=r.source))
        names[r.name] = r.source
        if r.playbook not in playbooks and r.playbook not in broken:
            errors.append(
                ConfigError(f"rule {r.name!r} names unknown playbook {r.playbook!r}", where=r.source)
            )
    for pb in playbooks.values():
        errors.extend(_check_references(pb, settings))
    for r in rules:
        for name in r.rate_limit.notify if r.rate_limit else []:
            if name not in settings.notifiers:
                errors.append(ConfigError(f"rate_limit.notify: unknown notifier {name!r}", where=r.source))
    if errors:
        raise ConfigErrors(errors)
    store_url = store_override or settings.store or f"sqlite:///{base / 'receiver.db'}"
    return Config(
        settings=settings,
        rules=tuple(rules),
        playbooks=playbooks,
        path=path,
        store_url=store_url,
        version=digest.hexdigest()[:12],
    )


# Actions that need an integration configured in the main config.
_NEEDS = {"grafana.annotate": "grafana", "alertmanager.silence": "alertmanager"}  # under integrations


def _check_integrations(settings: Settings, file: str) -> list[ConfigError]:
    """Notifier URL files readable and every URL one Apprise supports; outcome references known.

    URLs are never quoted in errors: they may hold tokens.
    """
    import apprise

    errors: list[ConfigError] = []
    for name, n in settings.notifiers.items():
        try:
            urls = n.all_urls()
        except SecretError as e:
            errors.append(ConfigError(f"notifiers.{name}: {e}", file=file))
            continue
        for i, url in enumerate(urls):
            if not apprise.Apprise().add(url):
                errors.append(
                    ConfigError(f"notifiers.{name}: URL {i + 1} is not one Apprise supports", file=file)
                )
    errors.extend(ConfigError(f"auth: {p}", file=file) for p in Authenticator(settings.auth).check())
    if settings.tls is not None:
        for key in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(settings.tls, key)
            if path is not None and not Path(path).is_file():
                errors.append(ConfigError(f"tls.{key}: no file {path}", file=file))
    for name in settings.outcome.notify:
        if name not in settings.notifiers:
            errors.append(ConfigError(f"outcome.notify: unknown notifier {name!r}", file=file))
    if settings.outcome.annotate and settings.integrations.grafana is None:
        errors.append(ConfigError("outcome.annotate needs integrations.grafana to be configured", file=file))
    return errors


def _check_references(pb: Playbook, settings: Settings) -> list[ConfigError]:
    """Every notifier a playbook names, and every integration its actions need, is configured."""
    errors: list[ConfigError] = []
    uses: list[tuple[str, str, Any]] = []
    for step in pb.steps:
        uses.append((f"step {step.id!r}", step.action, step.with_))
        if step.rollback is not None:
            uses.append((f"step {step.id!r} rollback", step.rollback.action, step.rollback.with_))
    for kind, hooks in pb.hooks.items():
        uses.extend((f"{kind}[{i}]", h.action, h.with_) for i, h in enumerate(hooks))
    for where, action, with_ in uses:
        place = f"playbook {pb.name!r} {where}"
        need = _NEEDS.get(action)
        if need is not None and getattr(settings.integrations, need) is None:
            errors.append(
                ConfigError(
                    f"{action} needs integrations.{need} to be configured", where=place, file=pb.source
                )
            )
        key = {"notify": "to", "approval": "notify"}.get(action)
        if key is not None and isinstance(with_, dict) and isinstance(with_.get(key), list):
            for name in with_[key]:
                if isinstance(name, str) and name not in settings.notifiers:  # templates decide at run time
                    errors.append(
                        ConfigError(f"with.{key}: unknown notifier {name!r}", where=place, file=pb.source)
                    )
    return errors
