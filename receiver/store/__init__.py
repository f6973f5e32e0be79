"""State stores: Redis for production, SQLite for one process with no server."""

from __future__ import annotations

from receiver.errors import ConfigError
from receiver.store.base import Store, StoreLimits


def open_store(url: str, *, limits: StoreLimits) -> Store:
    """Open the store named by a URL: redis://, rediss://, unix://, redis+sentinel:// or sqlite:///path."""
    if url.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://")):
        from receiver.store.redis import RedisStore

        return RedisStore.from_url(url, limits=limits)
    if url.startswith("sqlite://"):
        from receiver.store.sqlite import SQLiteStore

        path = url.removeprefix("sqlite://")
        path = path[1:] if path.startswith("/") and not path.startswith("//") else path
        return SQLiteStore(path or "receiver.db", limits=limits)
    raise ConfigError(
        f"unsupported store URL {url!r} (use redis://, rediss://, unix://, redis+sentinel:// or sqlite:///PATH)",
        where="store",
    )
