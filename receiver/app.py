"""The aiohttp application: routes, middleware, and the resources it owns."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from receiver import handlers
from receiver.auth import Authenticator
from receiver.config import Config
from receiver.engine import Engine
from receiver.metrics import Metrics
from receiver.middleware import auth_middleware, error_middleware
from receiver.store import open_store
from receiver.store.base import Store


def consumer_name() -> str:
    """This process's name in the work queue's consumer group."""
    return f"{socket.gethostname()}-{os.getpid()}"


def create_app(config: Config, *, store: Store | None = None, workers: bool = True) -> web.Application:
    """Build the app; the store is opened and the workers started when the app starts."""
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

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if workers:
            engine.start()
        yield
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
            web.get("/api/v1/executions", handlers.list_executions),
            web.get("/api/v1/executions/{id}", handlers.get_execution),
            web.post("/api/v1/executions/{id}/approve", handlers.approve_execution),
            web.post("/api/v1/executions/{id}/reject", handlers.reject_execution),
            web.post("/api/v1/executions/{id}/cancel", handlers.cancel_execution),
            web.post("/api/v1/executions/{id}/retry", handlers.retry_execution),
            web.get("/api/v1/rules", handlers.list_rules),
            web.post("/api/v1/rules/{name}/reset", handlers.reset_rule),
            web.get("/api/v1/playbooks", handlers.list_playbooks),
        ]
    )
    return app
