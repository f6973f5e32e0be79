"""Hot reload: load the config files again and, if they are valid, switch the engine over.

A reload is all or nothing: a config with any error is refused with every error listed and the
one in use stays. Webhooks in flight finish with the config they started with (the engine takes
one config per payload), running executions with the playbook they started with, and queued
ones with the playbook version they were admitted with (engine.py). Settings bound when the
process started (listen, store, workers, auth, ...) take effect only on a restart; a reload that
changes them says so in `restart_required`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receiver.config import Config, Settings, load_config, watched_files
from receiver.engine import Engine
from receiver.errors import ConfigError, ConfigErrors
from receiver.execution import iso
from receiver.logs import get_logger

# Settings read once when the process starts; a reload that changes them reports them.
RESTART_ONLY = (
    "listen",
    "store",
    "workers",
    "max_queued",
    "reclaim_after",
    "shutdown_grace",
    "watch",
    "webhook",
    "history.retention",
    "history.max_executions",
    "dedup",
    "auth",
    "tls",
)


def restart_only_changes(old: Settings, new: Settings) -> list[str]:
    """The RESTART_ONLY keys whose value differs between two settings."""
    a, b = old.model_dump(), new.model_dump()
    changed = []
    for key in RESTART_ONLY:
        x: Any = a
        y: Any = b
        for part in key.split("."):
            x, y = x.get(part), y.get(part)
        if x != y:
            changed.append(key)
    return changed


@dataclass(frozen=True)
class ReloadResult:
    """How one reload went."""

    ok: bool
    at: float
    trigger: str  # "startup", "SIGHUP", "api" or "watch"
    version: str  # the config version in use after it
    errors: list[str] = field(default_factory=list)
    restart_required: list[str] = field(default_factory=list)
    changed: bool = False  # a new version was put in use

    def as_json(self) -> dict[str, Any]:
        """The reload endpoint's body and /api/v1/status's `last_reload`."""
        return {
            "ok": self.ok,
            "at": iso(self.at),
            "trigger": self.trigger,
            "version": self.version,
            "changed": self.changed,
            "errors": self.errors,
            "restart_required": self.restart_required,
        }


class Reloader:
    """Reloads the engine's config from its files; one reload at a time."""

    def __init__(
        self,
        engine: Engine,
        *,
        load: Callable[[], Config] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        config = engine.config
        self._load = load or _loader(config.path, config.store_url)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._log = get_logger()
        self.loaded_at = clock()
        self.last = ReloadResult(ok=True, at=self.loaded_at, trigger="startup", version=config.version)
        engine.metrics.config_loaded(config.version, ok=True, at=self.loaded_at)

    async def reload(self, trigger: str) -> ReloadResult:
        """Load the files again (in a thread: it reads files) and switch over if they are valid."""
        async with self._lock:
            engine = self._engine
            old = engine.config
            now = self._clock()
            try:
                new = await asyncio.to_thread(self._load)
            except ConfigErrors as e:
                result = self._refused(old, trigger, now, [str(err) for err in e.errors])
            except ConfigError as e:
                result = self._refused(old, trigger, now, [str(e)])
            except OSError as e:  # the main config file vanished or cannot be read
                result = self._refused(old, trigger, now, [str(e)])
            else:
                restart = restart_only_changes(old.settings, new.settings)
                changed = new.version != old.version
                if changed:
                    engine.use_config(dataclasses.replace(new, store_url=old.store_url))
                    self.loaded_at = now
                result = ReloadResult(
                    ok=True,
                    at=now,
                    trigger=trigger,
                    version=engine.config.version,
                    restart_required=restart,
                    changed=changed,
                )
                self._log.info(
                    "config.reloaded",
                    trigger=trigger,
                    version=new.version,
                    previous=old.version,
                    changed=changed,
                    rules=len(new.rules),
                    playbooks=len(new.playbooks),
                    restart_required=restart or None,
                )
            self.last = result
            engine.metrics.config_loaded(engine.config.version, ok=result.ok, at=now, trigger=trigger)
            return result

    def _refused(self, old: Config, trigger: str, now: float, errors: list[str]) -> ReloadResult:
        self._log.error("config.reload_refused", trigger=trigger, version=old.version, errors=errors)
        return ReloadResult(ok=False, at=now, trigger=trigger, version=old.version, errors=errors)

    async def watch(self, interval_s: float) -> None:
        """Reload whenever the files' content changes, looking every interval_s; runs until
        cancelled. A change that does not load is refused once, not at every look."""
        seen = await asyncio.to_thread(files_digest, self._engine.config)
        while True:
            await asyncio.sleep(interval_s)
            now = await asyncio.to_thread(files_digest, self._engine.config)
            if now != seen:
                seen = now
                try:
                    await self.reload("watch")
                except Exception:  # a bug must not end the watching
                    self._log.exception("config.watch_failed")

    def status(self) -> dict[str, Any]:
        """What /api/v1/status shows of the config."""
        config = self._engine.config
        return {
            "version": config.version,
            "loaded_at": iso(self.loaded_at),
            "file": str(config.path) if config.path else None,
            "rules": len(config.rules),
            "playbooks": {p.name: p.version for p in config.playbooks.values()},
            "last_reload": self.last.as_json(),
        }


def files_digest(config: Config) -> str:
    """A digest of the names and contents of the files a config comes from (a Kubernetes
    ConfigMap update swaps a symlink: contents, not times, tell)."""
    h = hashlib.sha256()
    for path in watched_files(config):
        h.update(str(path).encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except OSError as e:
            h.update(f"unreadable: {e}".encode())
        h.update(b"\0")
    return h.hexdigest()


def _loader(path: Path | None, store_url: str) -> Callable[[], Config]:
    """Load the same files on the same store (`receiver serve` passes its own loader, with the
    command line's overrides)."""

    def load() -> Config:
        return load_config(path, store_override=store_url)

    return load
