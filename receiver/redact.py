"""Secrets never leave the process in text it writes: every secret read from a file is
remembered here, and logs, step records, timeline details, notifications and error answers
pass through `redact`, which replaces each remembered secret with [redacted]."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

REDACTED = "[redacted]"
# Shorter values are not treated as secrets: replacing them would garble ordinary text.
MIN_SECRET = 6

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def remember(value: str) -> None:
    """Treat `value` (and, for a URL, its password) as a secret from now on."""
    global _pattern
    parts = {value.strip()}
    if "://" in value:
        try:
            password = urlsplit(value.strip()).password
        except ValueError:
            password = None
        if password:
            parts.add(password)
    new = {p for p in parts if len(p) >= MIN_SECRET} - _secrets
    if not new:
        return
    with _lock:
        _secrets.update(new)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first: a URL before its password
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """`text` with every remembered secret replaced."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def redact_any(value: Any) -> Any:
    """Redact the strings inside a value (dicts and lists followed)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_any(v) for v in value]
    return value


def log_processor(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """A structlog processor that redacts every field of an event."""
    return {k: redact_any(v) for k, v in event.items()}
