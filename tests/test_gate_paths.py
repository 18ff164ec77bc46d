"""The gate decides on the path the app routes, and nothing a client sends turns a gated request into an exempt
one: proxy prefixes (ProxyFix's X-Forwarded-Prefix → SCRIPT_NAME), root_path, encodings, dot segments, ';',
case, trailing slashes, absolute-form targets. Exemptions are exact paths, or '/prefix/*' when asked for."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from werkzeug.middleware.proxy_fix import ProxyFix

from mfa_middleware.paths import Exemptions, asgi_route_path, mount_point, safe_next
from tests.gate_harness import ADAPTERS, Site

# Raw paths as a client may send them; none of them may reach the gated home page unverified. Where the app
# routes one of them to its /nic/update handler, that handler answers (it is exempt); anything else is
# either the gate's challenge or the app's 404/redirect.
VARIANTS = [
    "/", "//", "/./", "/nic/update/..", "/nic/update/../", "/nic/update/%2e%2e/", "/nic/update/%2E%2E",
    "/nic/update/..%2f", "/nic/update%2f..%2f", "/nic/update;/..", "/nic/update;", "/nic/update;x=1",
    "/NIC/UPDATE", "/Nic/Update", "/nic/update/", "/nic/update//", "/nic/update/./", "/nic/update/x",
    "/nic/updatex", "/nic/update%00", "/nic/update\\..\\", "/nic/update%5c..%5c", "/nic/update/%2F",
    "/static/../", "/static/%2e%2e/", "/static/./../", "/static/..;/", "/static//..//",
    "/mfa/../", "/mfa/..", "/mfa/%2e%2e/", "/nic/checkip/..", "/nic/checkip/", "/./nic/update/../",
    "/%6eic/update", "/nic/%75pdate/..", "/ nic/update",
]


@pytest.fixture(params=ADAPTERS)
async def pending(request: pytest.FixtureRequest, redis_url: str) -> tuple[Site, str]:
    """A site with '/static/*' also exempt, and the Cookie header of a user who signed in with the password
    only while 2FA is on (not verified)."""
    site = Site(request.param, redis_url, gate={"exempt": ["/nic/update", "/nic/checkip", "/static/*"]})
    b, _ = await site.new_user("pat")
    await b.logout()
    await b.login("pat")
    assert (await b.get("/")).status_code == 303
    header = "; ".join(f"{c.name}={c.value}" for c in b.client.cookies.jar)
    return site, header


def call_wsgi(app: Any, path: str, cookie: str, script: str = "", headers: dict[str, str] | None = None,
              query: str = "") -> tuple[int, dict[str, str], bytes]:
    environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": script, "PATH_INFO": path, "QUERY_STRING": query,
               "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO(),
               "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": False,
               "wsgi.run_once": False, "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "testserver", "HTTP_COOKIE": cookie}
    for k, v in (headers or {}).items():
        environ["HTTP_" + k.upper().replace("-", "_")] = v
    got: dict[str, Any] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]], *exc: Any) -> Any:
        got["status"], got["headers"] = int(status.split()[0]), {k.lower(): v for k, v in hdrs}

    body = b"".join(app(environ, start_response))
    return got["status"], got["headers"], body


async def call_asgi(app: Any, path: str, cookie: str, root_path: str = "", raw: bytes | None = None,
                    query: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": raw or quote(path).encode(), "root_path": root_path, "query_string": query,
             "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode("latin-1"))],
             "client": ("127.0.0.1", 1234), "server": ("testserver", 80)}
    got: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            got["status"] = message["status"]
            got["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            got["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return got["status"], got["headers"], got["body"]


def _reached_home(status: int, body: bytes) -> bool:
    return status == 200 and b'"user"' in body


@pytest.mark.parametrize("path", VARIANTS)
async def test_no_path_variant_skips_the_gate(pending: tuple[Site, str], path: str) -> None:
    site, cookie = pending
    from urllib.parse import unquote
    decoded = unquote(path)  # what servers put in PATH_INFO / scope["path"]
    for variant in {path, decoded}:
        if site.kind == "wsgi":
            wsgi_path = variant.encode("utf-8", "surrogateescape").decode("latin-1")
            status, _, body = call_wsgi(site.app, wsgi_path, cookie)
        else:
            status, _, body = await call_asgi(site.app, variant, cookie)
        assert not _reached_home(status, body), (variant, status, body[:200])
        assert status < 500


@pytest.mark.parametrize("prefix", ["/nic/update", "/nic/checkip", "/static", "/mfa", "//evil.example", "/x/../"])
async def test_a_mount_point_from_the_client_does_not_exempt(pending: tuple[Site, str], prefix: str) -> None:
    """SCRIPT_NAME (WSGI) and root_path (ASGI) say where the app is mounted; the gate decides on the rest."""
    site, cookie = pending
    if site.kind == "wsgi":
        status, headers, body = call_wsgi(site.app, "/", cookie, script=prefix)
    else:
        status, headers, body = await call_asgi(site.app, prefix.rstrip("/") + "/", cookie, root_path=prefix)
    assert not _reached_home(status, body)
    assert status == 303
    location = headers["location"]
    assert "/mfa/verify?next=" in location and not location.startswith("//")


def test_flask_demo_behind_proxyfix_with_a_forwarded_prefix(redis_url: str) -> None:
    """The reproduction: Flask's documented ProxyFix set-up, X-Forwarded-Prefix: /nic/update."""
    import re

    from examples.flask_demo import create_app
    from mfa_middleware.passwords import FAST
    from tests.test_gate_demos import _settings

    app = create_app(_settings(redis_url), argon2_profile=FAST)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1)  # type: ignore[method-assign]
    store = app.extensions["mfa_store"]
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as c:
        def login() -> None:
            token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text)
            assert token
            r = c.post("/login", data={"username": "demo", "password": "demo-password",
                                       "csrf_token": token.group(1)})
            assert r.status_code == 303

        login()
        page = c.get("/mfa/setup").text
        key = re.search(r"data-totp-key>([^<]+)<", page)
        assert key
        import time

        from mfa_middleware.totp import TotpParams, code_at, current_step
        seed = key.group(1).replace(" ", "")
        code = code_at(seed, current_step(time.time(), TotpParams()), TotpParams())
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        r = c.post("/mfa/setup", data={"csrf_token": token.group(1), "password": "demo-password", "code": code})
        assert r.status_code == 303
        c.post("/logout", data={})
        c.cookies.clear()
        login()
        groups_before = c.get("/nic/update").status_code  # noqa: F841 (the endpoint itself stays reachable)
        for prefix in ("/nic/update", "/nic/update/", "/nic/checkip", "/metrics"):
            hdr = {"X-Forwarded-Prefix": prefix}
            for path in ("/", "/account"):
                r = c.get(path, headers=hdr)
                assert r.status_code == 303 and "/mfa/verify" in r.headers["location"], (prefix, path, r.text[:200])
            r = c.post("/account/create", data={"group": "g1", "hosts": "demo.example.test"}, headers=hdr)
            assert r.status_code in (303, 401, 403), r.text[:200]
        assert not any("g1" in k for k in store.run(_scan(store)))


def _scan(store: Any) -> Any:
    from mfa_middleware.store import cmd

    result = yield cmd("KEYS", "*group*")
    return result or []


async def test_starlette_mounted_with_root_path(redis_url: str) -> None:
    """The gate inside a Starlette app mounted at /app: it routes on the path under the mount, and sends the
    browser to /app/mfa/verify."""
    site = Site("asgi", redis_url)
    outer = Starlette(routes=[Mount("/app", app=site.app)])
    b, _ = await site.new_user("mo")
    await b.logout()
    await b.login("mo")
    cookie = "; ".join(f"{c.name}={c.value}" for c in b.client.cookies.jar)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://t",
                                 cookies=dict(b.client.cookies)) as c:
        r = await c.get("/app/")
        assert r.status_code == 303 and r.headers["location"].startswith("/app/mfa/verify?next=/app/")
        for sub in ("/app/nic/update/..", "/app/nic/update/", "/app/NIC/update"):
            status, _, body = await call_asgi(outer, sub, cookie)
            assert not _reached_home(status, body)
        r = await c.get("/app/nic/update")
        assert r.status_code == 200 and r.text == "good 192.0.2.1"  # the exemption, under the mount
        r = await c.get("/app/mfa/verify")
        assert r.status_code == 200 and 'action="/app/mfa/verify' in r.text


@pytest.mark.usefixtures("django_ready")
def test_django_served_under_a_sub_path(redis_url: str) -> None:
    """Django under SCRIPT_NAME=/site (as gunicorn/mod_wsgi mount it): the gate routes on PATH_INFO, as Django
    does, and its redirects and pages carry the mount point."""
    from examples.django_site.wsgi import create_app
    from tests.test_frameworks import SETTINGS

    app = create_app(SETTINGS, store=None)
    status, headers, _ = call_wsgi(app, "/mfa/verify", "", script="/site")
    assert status == 303 and headers["location"].startswith("/site/login")
    assert "next=/site/mfa/verify" in headers["location"]
    for path in ("/nic/update/..", "/nic/update/", "/NIC/UPDATE"):
        status, headers, body = call_wsgi(app, path, "", script="/nic/update")
        assert status != 200 or b"good" not in body


def test_exemptions_are_exact_unless_a_prefix_is_asked_for() -> None:
    ex = Exemptions(["/nic/update", "/static/*"])
    assert ex("/nic/update") and not ex("/nic/update/") and not ex("/nic/update/x") and not ex("/NIC/update")
    assert ex("/static/app.css") and ex("/static/img/a.png") and not ex("/static") and not ex("/staticx/a")
    for sneaky in ("/static/../account", "/static/./x", "/static/%2e%2e/x", "/static//x", "/static/a\\..\\b",
                   "/static/..", "/static/x/../../account"):
        assert not ex(sneaky), sneaky
    with pytest.raises(ValueError):
        Exemptions(["nic/update"])
    with pytest.raises(ValueError):
        Exemptions(["/static*"])


def test_route_paths_and_mount_points() -> None:
    assert asgi_route_path({"path": "/app/x", "root_path": "/app"}) == "/x"
    assert asgi_route_path({"path": "/app", "root_path": "/app"}) == "/"
    assert asgi_route_path({"path": "/apple", "root_path": "/app"}) == "/apple"
    assert asgi_route_path({"path": "/x", "root_path": "/app"}) == "/x"
    assert mount_point("/site/") == "/site" and mount_point("//evil.example") == "" and mount_point("x") == ""
    assert mount_point("/a%20b") == "/a%20b" and mount_point("/a b") == "" and mount_point("/a\\b") == ""
    assert safe_next("/a b") == "/a%20b"


NEXT_TARGETS = ["/%E2%80%A8", "/%FF", "/\uff0f\uff0fevil.example", "//evil.example", "/\t/evil.example",
                "https://evil.example/", "/caf\u00e9?x=\u2028", "/%0d%0aSet-Cookie:x=1", "\\evil.example", "/ok"]


@pytest.mark.parametrize("target", NEXT_TARGETS)
async def test_any_next_gets_a_same_site_redirect(redis_url: str, target: str) -> None:
    for kind in ADAPTERS:
        site = Site(kind, redis_url)
        b, _ = await site.new_user(f"n{abs(hash((kind, target))) % 10**8}")
        # A verified user on the prompt is sent on to ``next`` at once.
        raw = f"next={quote(target, safe='/%')}".encode()
        for query in (raw, b"next=" + target.encode("utf-8", "surrogatepass").replace(b"%", b"%25")):
            cookie = "; ".join(f"{c.name}={c.value}" for c in b.client.cookies.jar)
            if kind == "wsgi":
                environ_query = query.decode("latin-1")
                status, headers, _ = call_wsgi_query(site.app, "/mfa/verify", cookie, environ_query)
            else:
                status, headers, _ = await call_asgi_query(site.app, "/mfa/verify", cookie, query)
            assert status == 303, (kind, target, status)
            location = headers["location"]
            assert location.isascii() and location.startswith("/") and not location.startswith("//")
            assert "\\" not in location and all(ord(c) > 0x20 for c in location)


def call_wsgi_query(app: Any, path: str, cookie: str, query: str) -> tuple[int, dict[str, str], bytes]:
    return call_wsgi(app, path, cookie, headers=None, query=query)


async def call_asgi_query(app: Any, path: str, cookie: str, query: bytes) -> tuple[int, dict[str, str], bytes]:
    return await call_asgi(app, path, cookie, query=query)
