"""The aiohttp application: routes, middleware, and the resources it owns."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from receiver import handlers
from receiver import web as ui
from receiver.auth import Authenticator
from receiver.config import Config
from receiver.engine import Engine
from receiver.metrics import Metrics
from receiver.middleware import auth_middleware, error_middleware
from receiver.reload import Reloader, ReloadResult
from receiver.store import open_store
from receiver.store.base import Store


def consumer_name() -> str:
    """This process's name in the work queue's consumer group."""
    return f"{socket.gethostname()}-{os.getpid()}"


def create_app(
    config: Config,
    *,
    store: Store | None = None,
    workers: bool = True,
    load: Callable[[], Config] | None = None,
    sighup: bool = False,
) -> web.Application:
    """Build the app; the store is opened and the workers started when the app starts.

    `load` reads the config files again for a reload (default: the same files on the same
    store); with `sighup`, SIGHUP reloads too (`receiver serve`).
    """
    metrics = Metrics()
    app = web.Application(
        client_max_size=config.settings.webhook.max_body_bytes,
        middlewares=[error_middleware(metrics), auth_middleware(Authenticator(config.settings.auth))],
    )
    owned = store is None
    engine = Engine(
        config=config,
        store=store if store is not None else open_store(config.store_url, limits=config.settings.limits()),
        metrics=metrics,
        consumer=consumer_name(),
    )
    app[handlers.ENGINE] = engine
    reloader = Reloader(engine, load=load)
    app[handlers.RELOADER] = reloader
    app[handlers.STATS_CACHE] = handlers.StatsCache()
    pending: set[asyncio.Task[ReloadResult]] = set()

    def on_sighup() -> None:
        task = asyncio.create_task(reloader.reload("SIGHUP"))
        pending.add(task)
        task.add_done_callback(pending.discard)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
        if workers:
            engine.start()
        watcher = None
        if config.settings.watch > 0:
            watcher = asyncio.create_task(reloader.watch(config.settings.watch), name="watch")
        yield
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await asyncio.gather(*pending, return_exceptions=True)
        await engine.stop(config.settings.shutdown_grace)
        if owned:
            await engine.store.close()

    app.cleanup_ctx.append(lifecycle)
    app.add_routes(
        [
            web.post("/webhook", handlers.webhook),
            web.get("/-/healthy", handlers.healthy),
            web.get("/-/ready", handlers.ready),
            web.get("/metrics", handlers.metrics),
            web.post("/-/reload", handlers.reload_config),
            web.get("/api/v1/status", handlers.status),
            web.get("/api/v1/whoami", handlers.whoami),
            web.get("/api/v1/stats", handlers.stats),
            web.get("/api/v1/openapi.json", handlers.openapi),
            web.get("/api/v1/executions", handlers.list_executions),
            web.get("/api/v1/executions/{id}", handlers.get_execution),
            web.post("/api/v1/executions/{id}/approve", handlers.approve_execution),
            web.post("/api/v1/executions/{id}/reject", handlers.reject_execution),
            web.post("/api/v1/executions/{id}/cancel", handlers.cancel_execution),
            web.post("/api/v1/executions/{id}/retry", handlers.retry_execution),
            web.get("/api/v1/rules", handlers.list_rules),
            web.post("/api/v1/rules/{name}/reset", handlers.reset_rule),
            web.get("/api/v1/playbooks", handlers.list_playbooks),
            *ui.routes(),
        ]
    )
    return app
