"""The apps the benchmarks serve with uvicorn (``--factory bench.apps:NAME``).

``bare``: the reference, a Starlette endpoint answering one constant plaintext line at ``/nic/update``.
``update_endpoint``: ``ddns_update.app:create_app`` itself, given a service whose password hasher reports
how many argon2id verifies it ran when the process exits (``BENCH_ARGON2_FILE``), which is how the
bench proves the warm path never hashes.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ddns_update.app import build_service, create_app
from mfa_middleware.config import Settings
from mfa_middleware.passwords import PasswordHasher
from mfa_middleware.store import Keys

ANSWER = "nochg 203.0.113.7\n"


def bare() -> Starlette:
    async def update(request: Request) -> PlainTextResponse:
        return PlainTextResponse(ANSWER)

    return Starlette(routes=[Route("/nic/update", update, methods=["GET", "HEAD", "POST"])])


def update_endpoint() -> Starlette:
    settings = Settings.from_env()
    hasher = PasswordHasher()
    report = os.environ.get("BENCH_ARGON2_FILE")
    if report:
        atexit.register(lambda: Path(report).write_text(str(hasher.calls)))
    return create_app(settings, service=build_service(settings, Keys(), hasher))
