"""The only place errors become HTTP statuses; every error body is JSON that says what is wrong."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from receiver.auth import Authenticator, Identity, Role
from receiver.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Overloaded,
    PayloadError,
    RequestError,
    StoreUnavailable,
    Unauthorized,
)
from receiver.logs import get_logger
from receiver.metrics import Metrics
from receiver.redact import redact_any

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_log = get_logger()


def _error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response(redact_any({"error": message, **extra}), status=status)


def error_middleware(metrics: Metrics) -> Middleware:
    """Map typed errors to 4xx/503, anything unexpected to a bare 500, and time the webhook."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        response: web.StreamResponse
        try:
            response = await handler(request)
        except PayloadError as e:
            response = _error(400, str(e), field=e.field)
        except RequestError as e:
            response = _error(400, str(e), param=e.param)
        except NotFound as e:
            response = _error(404, str(e))
        except Conflict as e:
            response = _error(409, str(e))
        except Unauthorized as e:
            response = _error(401, str(e))
            response.headers["WWW-Authenticate"] = 'Bearer realm="receiver"'
        except Forbidden as e:
            response = _error(403, str(e))
        except Overloaded as e:
            _log.warning("webhook.overloaded", queued=e.queued, limit=e.limit)
            response = _error(503, str(e))
            response.headers["Retry-After"] = "30"
        except StoreUnavailable as e:
            _log.warning("request.store_unavailable", path=request.path, error=str(e))
            response = _error(503, "the state store is unavailable; retry later", cause=str(e))
        except web.HTTPException as e:
            if e.status < 400:
                raise
            message = e.text if e.status == 413 and e.text else e.reason
            response = _error(e.status, message)
            if "Allow" in e.headers:
                response.headers["Allow"] = e.headers["Allow"]
        except Exception:
            _log.exception("request.failed", path=request.path, method=request.method)
            response = _error(500, "internal error; see the receiver's log")
        if request.path == "/webhook":
            metrics.webhook_duration.labels(str(response.status)).observe(time.perf_counter() - start)
        return response

    return middleware


# The API token owner's name on an authenticated request, for handlers that record who acted,
# and the token's role.
IDENTITY = web.RequestKey("identity", str)
ROLE = web.RequestKey("role", Role)
# Paths anyone may call: probes and metrics (as Prometheus and the kubelet call them).
OPEN_PATHS = frozenset({"/-/healthy", "/-/ready", "/metrics"})


def required_role(method: str, path: str) -> Role | None:
    """The API role a request needs; None for the open paths and the webhook."""
    if path in OPEN_PATHS or path == "/webhook" or not path.startswith(("/api/", "/-/")):
        return None
    if path == "/-/reload":
        return Role.ADMIN
    return Role.VIEWER if method in ("GET", "HEAD") else Role.OPERATOR


def auth_middleware(auth: Authenticator) -> Middleware:
    """Check the webhook's credentials and the API token's role before the handler runs; the
    caller's name is request[IDENTITY] for handlers that record who did something."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        if request.path == "/webhook":
            if not auth.webhook_ok(header):
                _log.warning("auth.webhook_refused", remote=request.remote)
                raise Unauthorized("the webhook needs the credentials configured under auth.webhook")
            return await handler(request)
        need = required_role(request.method, request.path)
        if need is None or not auth.api_required:
            return await handler(request)
        who: Identity | None = auth.api_identity(header)
        if who is None:
            raise Unauthorized("an API token is needed: Authorization: Bearer <token>")
        if who.role < need:
            raise Forbidden(
                f"{request.method} {request.path} needs role {need.name.lower()};"
                f" {who.name} has {who.role.name.lower()}"
            )
        request[IDENTITY] = who.name
        request[ROLE] = who.role
        return await handler(request)

    return middleware
