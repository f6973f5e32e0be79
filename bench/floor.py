"""The floor: what any receiver must do per webhook, and nothing more. Read the body, validate it
into the same pydantic payload model, and make one Redis round trip per payload (a Lua script
doing SET NX with a TTL for each alert). `python -m bench.floor PORT REDIS_URL`."""

from __future__ import annotations

import gc
import json
import sys

import redis.asyncio as aioredis
from aiohttp import web

from receiver.models import parse_payload

SEEN = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('SET', key, '1', 'NX', 'PX', ARGV[1]) and 1 or 0
end
return out
"""


def app(redis_url: str) -> web.Application:
    client = aioredis.Redis.from_url(redis_url)
    seen = client.register_script(SEEN)

    async def webhook(request: web.Request) -> web.Response:
        payload = parse_payload(json.loads(await request.read()))
        keys = [f"floor:{a.fingerprint}:{a.starts_at.isoformat()}:{a.status}" for a in payload.alerts]
        fresh = await seen(keys=keys, args=[7 * 86400 * 1000])
        return web.json_response({"new": sum(fresh), "alerts": len(keys)})

    application = web.Application()
    application.router.add_post("/webhook", webhook)
    return application


if __name__ == "__main__":
    application = app(sys.argv[2])
    gc.freeze()  # as `receiver serve` does, so that the floor gets every advantage the receiver has
    web.run_app(application, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
