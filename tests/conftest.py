"""Shared fixtures: one real redis-server per session, and a store of each kind per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from receiver.store.base import Store, StoreLimits
from receiver.store.redis import RedisStore
from receiver.store.sqlite import SQLiteStore
from tests.support import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server started by the tests on a free port (never the machine's own 6379)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


MakeStore = Callable[[StoreLimits], Store]


@pytest.fixture(params=["redis", "sqlite"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """Opens stores of one kind with given limits, all on the same data; closes them after."""
    opened: list[Store] = []
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    def make(limits: StoreLimits) -> Store:
        s: Store
        if request.param == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            s = RedisStore.from_url(server.url, limits=limits, prefix=prefix)
        else:
            s = SQLiteStore(tmp_path / "state.db", limits=limits)
        opened.append(s)
        return s

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    """A fresh store of each kind; the Redis one gets a key prefix of its own."""
    return make_store(StoreLimits())
