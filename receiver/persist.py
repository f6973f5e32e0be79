"""Writing through a store outage: a result that exists (a step finished, an execution ended)
is retried until the store takes it, rather than lost or turned into a crash."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from receiver.errors import StoreUnavailable

T = TypeVar("T")

# Waits between attempts while the store is down: short at first, then every few seconds.
FIRST_WAIT_S = 0.25
MAX_WAIT_S = 5.0


async def until_stored(
    op: Callable[[], Awaitable[T]], *, what: str, log: Any, give_up: Callable[[], bool] = lambda: False
) -> T | None:
    """Run `op` until it does not raise StoreUnavailable; None if `give_up()` turned true first.

    Logs the outage once when it starts and once when the write finally went through.
    """
    wait = FIRST_WAIT_S
    failed = False
    while True:
        try:
            result = await op()
        except StoreUnavailable as e:
            if give_up():
                log.warning("store.write_abandoned", what=what, error=str(e))
                return None
            if not failed:
                log.warning("store.write_waiting", what=what, error=str(e))
                failed = True
            await asyncio.sleep(wait)
            wait = min(MAX_WAIT_S, wait * 2)
            continue
        if failed:
            log.info("store.write_done", what=what)
        return result
