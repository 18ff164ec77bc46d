"""Dev tool: the ASGI gate's CPU cost per verified request, in process, next to the same app without it.

``.venv/bin/python bench/profile_gate.py [--requests N] [--rounds R]``

No HTTP server, no load generator and no Redis (the in-memory store): ``bench.gate_apps.session()`` and
``bench.gate_apps.gated()`` are called directly with the ASGI scope of a browser whose session already
passed 2FA (logged in and enrolled through the app itself). Prints, per round (interleaved), µs per request
of each app, then the minimum over the rounds, ``Gate.quick`` alone, ``Gate.passing`` alone (the lane
every request of a verified session takes once ``quick`` has let its Cookie header through), and the gate
layer alone (the middleware with a no-op app inside).

Under uvicorn the gap is several times larger than here: the loop below runs the
same code back to back with warm CPU caches, while a server interleaves HTTP parsing, the event loop and 32
connections between two passes through the gate. Use this to compare code changes, ``bench gate_overhead``
for the real ratio. Cookie re-issues (``Sessions.stale``) and epoch-cache refreshes are excluded here on
purpose (the loop is shorter than a minute, and the epoch cache ttl is lifted for the ``quick`` timing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
import timeit
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.pop("REDIS_URL", None)  # the in-memory store: this measures the gate's CPU, not Redis

import httpx
import pyotp

from bench import gate_apps
from mfa_middleware.accounts import Accounts
from mfa_middleware.asgi import MFAMiddleware
from mfa_middleware.gate import Request, parse_cookies
from mfa_middleware.passwords import FAST, PasswordHasher

PASSWORD = "password-123"


def _gate_layer(app: Any) -> MFAMiddleware:
    layer = app.middleware_stack
    while not isinstance(layer, MFAMiddleware):
        layer = layer.app
    return layer


async def _verified_cookie(app: Any) -> str:
    """Log in through the app and enroll 2FA (which leaves the session verified); the Cookie header."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.get("/")  # builds the middleware stack
        mw = _gate_layer(app)
        await mw.store.run(Accounts(mw.store.keys, PasswordHasher(FAST)).create("u1", PASSWORD))
        assert (await client.post("/login", data={"username": "u1", "password": PASSWORD})).status_code == 200
        page = (await client.get("/mfa/setup")).text
        key = re.search(r"data-totp-key>([^<]+)<", page).group(1).replace(" ", "")  # type: ignore[union-attr]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        r = await client.post("/mfa/setup", data={"csrf_token": csrf, "password": PASSWORD,
                                                  "code": pyotp.TOTP(key).now()})
        assert r.status_code == 303, r.text
        return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


async def main(requests: int, rounds: int) -> None:
    gated = gate_apps.gated()
    plain = gate_apps.session()
    cookie = await _verified_cookie(gated)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"t"), (b"cookie", cookie.encode())], "client": ("127.0.0.1", 1),
             "server": ("t", 80)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    async def many(app: Any, n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            await app(dict(scope), receive, send)
        return (time.perf_counter() - t) / n * 1e6

    res: dict[str, list[float]] = {"plain": [], "gated": []}
    for i in range(rounds):
        for name, app in (("plain", plain), ("gated", gated)):
            await many(app, 200)
            res[name].append(await many(app, requests))
        print(f"round {i + 1}: " + "  ".join(f"{k} {v[-1]:.1f} µs" for k, v in res.items()), flush=True)
    best = {k: min(v) for k, v in res.items()}
    print(f"min: plain {best['plain']:.1f} µs  gated {best['gated']:.1f} µs  "
          f"gate {best['gated'] - best['plain']:.1f} µs/request")

    mw = _gate_layer(gated)
    gate = mw.gate
    gate.confirmed.ttl = 1e9  # keep what handle confirmed: time the lanes, not the store
    req = Request(method="GET", path="/", query={}, headers={"cookie": cookie}, cookies=parse_cookies(cookie),
                  client_ip="127.0.0.1", https=False, identity="u1", memo_key=cookie)
    await mw.store.run(gate.handle(req))
    assert gate.passing("/", "u1", cookie, False) is not None, "handle has confirmed the session for passing"
    n = 20_000
    quick = min(timeit.repeat(lambda: gate.quick("/", "u1", cookie, False), number=n, repeat=5)) / n * 1e6
    print(f"Gate.quick alone: {quick:.2f} µs")
    passing = min(timeit.repeat(lambda: gate.passing("/", "u1", cookie, False), number=n, repeat=5)) / n * 1e6
    print(f"Gate.passing alone (what every request of a verified session runs): {passing:.2f} µs")

    async def noop(scope: Any, receive: Any, send: Any) -> None:
        pass

    inner, mw.app = mw.app, noop
    session_scope = {**scope, "session": {"user": "u1"}}
    t = time.perf_counter()
    for _ in range(n):
        await mw(dict(session_scope), receive, send)
    print(f"gate layer alone (MFAMiddleware, no-op app inside): {(time.perf_counter() - t) / n * 1e6:.2f} µs")
    mw.app = inner


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
