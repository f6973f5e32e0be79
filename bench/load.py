"""The load generator, run in its own process: POST bodies from a file (one JSON body per line) to
a URL over N connections, bounded by a request count and a duration, or at a fixed rate.
`python -m bench.load URL BODIES CONNECTIONS SECONDS MAX_REQUESTS [RATE [FIRST_N]]`; prints JSON
figures. "__N__" in a body becomes a number from FIRST_N on, never the same twice in one run: give
each run its own range and alerts stay new across runs."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from itertools import cycle
from pathlib import Path

import aiohttp


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def main(
    url: str,
    bodies_file: str,
    connections: int,
    seconds: float,
    max_requests: int,
    rate: float,
    first_n: int = 0,
) -> None:
    bodies = [line.encode() for line in BODIES.splitlines() if line]
    counter = iter(range(first_n, first_n + 10**9))

    def stamped(templates: list[bytes]) -> Iterator[bytes]:
        # "__N__" in a body becomes a number never sent before: those alerts are new.
        for body in cycle(templates):
            yield body.replace(b"__N__", str(next(counter)).encode()) if b"__N__" in body else body

    source = stamped(bodies)
    urls = cycle(url.split(","))  # several receivers: requests spread round robin
    latencies: list[float] = []
    codes: dict[int, int] = {}
    sent = 0
    start = time.perf_counter()
    deadline = start + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes) -> None:
            t = time.perf_counter()
            async with session.post(next(urls), data=body, headers=headers) as resp:
                await resp.read()
                codes[resp.status] = codes.get(resp.status, 0) + 1
            latencies.append(time.perf_counter() - t)

        if rate > 0:  # open loop: one request every 1/rate seconds
            tasks = []
            for n, body in enumerate(source):
                due = start + n / rate
                if due > deadline or n >= max_requests:
                    break
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                tasks.append(asyncio.create_task(one(body)))
            sent = len(tasks)
            await asyncio.gather(*tasks)
        else:  # closed loop: each connection sends as fast as answers come back

            async def worker() -> None:
                nonlocal sent
                while time.perf_counter() < deadline and sent < max_requests:
                    sent += 1
                    await one(next(source))

            await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "seconds": round(elapsed, 3),
                "rps": round(len(latencies) / elapsed, 1),
                "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
                "p999_ms": round(percentile(latencies, 0.999) * 1000, 2),
                "codes": codes,
            }
        )
    )


BODIES = ""  # read before the event loop starts


if __name__ == "__main__":
    args = sys.argv[1:]
    BODIES = Path(args[1]).read_text(encoding="utf-8")
    asyncio.run(
        main(
            args[0],
            args[1],
            int(args[2]),
            float(args[3]),
            int(args[4]),
            float(args[5]) if len(args) > 5 else 0.0,
            int(args[6]) if len(args) > 6 else 0,
        )
    )
