"""The web view: static files shipped in the package, served by the receiver itself.

The pages hold no data: their JavaScript reads the JSON API with the viewer's token, so they are
served to anyone and everything they show stays behind the API's roles.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from receiver.errors import NotFound

# name -> content type; nothing else under /ui/ is served.
ASSETS = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
}
# Only this origin's files, no inline script or style, no framing: a label or annotation that
# holds markup can never run.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, bytes]:
    folder = resources.files(__name__)
    return {name: folder.joinpath(name).read_bytes() for name in ASSETS}


_FILES = _load()


async def home(request: web.Request) -> web.Response:
    """GET / and GET /ui: to the web view."""
    raise web.HTTPFound("/ui/")


async def asset(request: web.Request) -> web.Response:
    """GET /ui/ and GET /ui/{name}: a file of the web view."""
    name = request.match_info.get("name") or "index.html"
    if name not in ASSETS:
        raise NotFound("web view file", name)  # the name is quoted: it may hold anything
    return web.Response(body=_FILES[name], content_type=ASSETS[name], charset="utf-8", headers=HEADERS)


def routes() -> list[web.RouteDef]:
    """The web view's routes."""
    return [
        web.get("/", home),
        web.get("/ui", home),
        web.get("/ui/", asset),
        web.get("/ui/{name}", asset),
    ]
