"""The main config file and everything it points at (rules and playbooks), loaded once.

Every problem found is reported together, each naming its file, line and key; a config with
any error is refused whole.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from receiver.actions import action_params
from receiver.durations import parse_duration
from receiver.errors import ConfigError, ConfigErrors
from receiver.playbook import Playbook, load_playbook
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
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT, got {v!r}")
        return v

    def host_port(self) -> tuple[str, int]:
        """The listen address split into host and port."""
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    def limits(self) -> StoreLimits:
        """Retention and dedup limits for the store."""
        return StoreLimits(
            retention_s=self.history.retention,
            max_executions=self.history.max_executions,
            idempotency_ttl_s=self.dedup.idempotency_ttl,
        )


@dataclass(frozen=True)
class Config:
    """Everything loaded: settings, rules in order, playbooks by name, and where they came from."""

    settings: Settings
    rules: tuple[Rule, ...]
    playbooks: dict[str, Playbook]
    path: Path | None
    store_url: str


def _expand(patterns: list[str], base: Path, key: str, errors: list[ConfigError], file: str) -> list[Path]:
    paths: list[Path] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        hits = sorted(glob.glob(full))
        if not hits:
            errors.append(ConfigError(f"{key}: {pattern!r} matches no file", file=file))
        paths.extend(Path(h) for h in hits)
    return paths


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
    if listen_override is not None and isinstance(data, dict):
        data = {**data, "listen": listen_override}
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigErrors(doc.errors_from(e)) from e

    rules: list[Rule] = []
    for rpath in _expand(settings.rules, base, "rules", errors, file):
        try:
            for d in load_documents(rpath):
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
    if errors:
        raise ConfigErrors(errors)
    store_url = store_override or settings.store or f"sqlite:///{base / 'receiver.db'}"
    return Config(settings=settings, rules=tuple(rules), playbooks=playbooks, path=path, store_url=store_url)
