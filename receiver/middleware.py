"""The only place errors become HTTP statuses; every error body is JSON that says what is wrong."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from receiver.errors import Conflict, NotFound, PayloadError, RequestError, StoreUnavailable
from receiver.logs import get_logger
from receiver.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_log = get_logger()


def _error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


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
