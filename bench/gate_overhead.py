"""Gate overhead: a hello-world whose session already passed 2FA, with and without the gate.

ASGI: Starlette under uvicorn. WSGI: Flask under gunicorn (gthread). "Without the gate" is the same app
with its own login (its session cookie) — the gate's cost is the difference. A bare hello-world and
Starlette's ``SessionMiddleware`` alone are printed for reference.
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import httpx
import pyotp

from bench import harness
from mfa_middleware.accounts import Accounts
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import open_store
from tests.servers import free_port

PASSWORD = "bench-password-1"


def _seed_accounts(url: str, users: Sequence[str]) -> None:
    store = open_store(url)
    for user in users:
        store.run(Accounts(store.keys, PasswordHasher(FAST)).create(user, PASSWORD))
    store.close()


def _cookies(base: str, enroll: bool, user: str) -> str:
    """Log in (and enroll 2FA, which leaves the session verified); return the Cookie header to replay."""
    with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as client:
        assert client.post("/login", data={"username": user, "password": PASSWORD}).status_code == 200
        if enroll:
            page = client.get("/mfa/setup").text
            key = re.search(r"data-totp-key>([^<]+)<", page).group(1).replace(" ", "")  # type: ignore[union-attr]
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            r = client.post("/mfa/setup", data={"csrf_token": csrf, "password": PASSWORD,
                                                "code": pyotp.TOTP(key).now()})
            assert r.status_code == 303, r.text
        assert client.get("/").status_code == 200
        return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


@contextmanager
def gunicorn_app(target: str, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    cmd = [*harness._pin(0), sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "8",
           "-b", f"127.0.0.1:{port}", "--log-level", "warning", target]
    with harness._process(cmd, port, env):
        yield f"http://127.0.0.1:{port}"


class Browser:
    """The cookies a browser would send now. The gate re-issues its ticket when it is a minute old (one
    Set-Cookie, taken by the browser); wrk replaying an old one would make every gated response carry a
    freshly signed cookie, a cost no browser causes. So every wrk run starts with a ticket younger than
    ``FRESH_FOR`` seconds, which outlives the run: an older one is replaced by a new verified session
    (``new_session``: another user signs in and enrolls, a fraction of a second). Waiting for the re-issue
    instead would leave the machine idle for up to 20 s right before a gated run, and on this VM the first
    run after an idle pause often reads slow (bench/README.md)."""

    FRESH_FOR = 40.0  # Sessions.refresh_after is 60 s for the default 30 min idle timeout

    def __init__(self, url: str, new_session: Callable[[], str] | None = None) -> None:
        self.url, self.new_session = url, new_session
        self.cookie, self.obtained = new_session() if new_session else "", time.monotonic()

    def header(self, within: float = 0.0) -> list[str]:
        """The Cookie header, for a new session if the ticket is older than ``FRESH_FOR - within`` seconds."""
        if self.new_session and "mfa_session=" in self.cookie \
                and time.monotonic() - self.obtained > self.FRESH_FOR - within:
            self.cookie, self.obtained = self.new_session(), time.monotonic()
        return [f"Cookie: {self.cookie}"] if self.cookie else []


def sessions(base: str, redis_url: str, enroll: bool, prefix: str) -> Callable[[], str]:
    """Signed-in sessions of new users ``prefix-0``, ``prefix-1``…, each with 2FA enrolled (and so verified)
    if ``enroll``: the Cookie header each leaves."""
    numbers = itertools.count()

    def new() -> str:
        user = f"{prefix}-{next(numbers)}"
        _seed_accounts(redis_url, [user])
        return _cookies(base, enroll, user)

    return new


def _measure(name: str, browser: Browser, seconds: float, like: harness.AtBest | None = None) -> harness.AtBest:
    def run(connections: int) -> harness.Result:
        result = harness.wrk(browser.url + "/", seconds=seconds, headers=browser.header(), connections=connections)
        if result.errors:
            print(f"  {name}: {result.errors} non-2xx answers", flush=True)
        return result

    return harness.AtBest(run, like=like)


def run(seconds: float = harness.SECONDS, rounds: int = harness.ROUNDS) -> list[str]:
    with harness.redis_server() as redis:  # pinned to the load core, as in the other benchmarks
        env = {"REDIS_URL": redis.url}
        with harness.uvicorn_app("bench.gate_apps:bare", env) as bare, \
                harness.uvicorn_app("bench.gate_apps:session", env) as plain, \
                harness.uvicorn_app("bench.gate_apps:gated", env) as gated:
            browsers = {"bare": Browser(bare), "session": Browser(plain, sessions(plain, redis.url, False, "asgi")),
                        "gated": Browser(gated, sessions(gated, redis.url, True, "asgi-2fa"))}
            session = _measure("session", browsers["session"], seconds)
            runs = {  # the gated app is measured at the concurrency the session app chose (``AtBest.like``)
                "bare hello (ASGI)": _measure("bare", browsers["bare"], seconds),
                "app + SessionMiddleware": session,
                "app + SessionMiddleware + gate": _measure("gated", browsers["gated"], seconds, like=session),
            }
            asgi = harness.interleaved(runs, rounds)
            asgi_duet = _duet(runs, browsers, ("app + SessionMiddleware", "app + SessionMiddleware + gate"))
        with gunicorn_app("bench.gate_apps:flask_plain()", env) as fplain, \
                gunicorn_app("bench.gate_apps:flask_gated()", env) as fgated:
            time.sleep(0.5)
            fbrowsers = {"plain": Browser(fplain, sessions(fplain, redis.url, False, "wsgi")),
                         "gated": Browser(fgated, sessions(fgated, redis.url, True, "wsgi-2fa"))}
            flask = _measure("flask", fbrowsers["plain"], seconds)
            fruns = {
                "Flask app (session login)": flask,
                "Flask app + WSGI gate": _measure("flask gated", fbrowsers["gated"], seconds, like=flask),
            }
            wsgi = harness.interleaved(fruns, rounds)
            wsgi_duet = _duet(fruns, fbrowsers, tuple(fruns))
    print("\nGate overhead, ASGI (Starlette + uvicorn), verified session, one server at a time:")
    print(harness.table(asgi, "app + SessionMiddleware"))
    print(_duet_table(asgi_duet))
    print("\nGate overhead, WSGI (Flask + gunicorn gthread), verified session, one server at a time:")
    print(harness.table(wsgi, "Flask app (session login)"))
    print(_duet_table(wsgi_duet))
    harness.save("gate", {"machine": harness.machine(), "throughput": harness.series({**asgi, **wsgi}),
                          "duet": {name: {"paired": d.paired[name], **vars(d.results[name])}
                                   for d in (asgi_duet, wsgi_duet) for name in d.results}})
    solo_asgi = asgi["app + SessionMiddleware + gate"].rps / asgi["app + SessionMiddleware"].rps
    solo_wsgi = wsgi["Flask app + WSGI gate"].rps / wsgi["Flask app (session login)"].rps
    print(f"\nthe targets, one at a time (ratio of medians): ASGI {solo_asgi:.3f}, WSGI {solo_wsgi:.3f}; "
          f"duet (paired): ASGI {asgi_duet.paired['app + SessionMiddleware + gate']:.3f}, "
          f"WSGI {wsgi_duet.paired['Flask app + WSGI gate']:.3f}")
    return [harness.target("gate_asgi", solo_asgi, 0.90), harness.target("gate_wsgi", solo_wsgi, 0.85)]


def _duet(runs: dict[str, harness.AtBest], browsers: dict[str, Browser], pair: tuple[str, ...]) -> harness.Duet:
    """The target's pair driven at once (``harness.duet``), each at the concurrency its warm-up chose; printed
    beside the one-at-a-time table for its steadiness, not used for the targets (``harness.duet``'s caveat)."""
    def fresh_cookies() -> None:  # a ticket about to be re-issued is renewed before the round, not in it
        for browser in browsers.values():
            browser.header(within=10.0)

    return harness.duet({name: runs[name] for name in pair}, before=fresh_cookies)


def _duet_table(d: harness.Duet) -> str:
    base = next(iter(d.results))
    lines = [f"the same pair driven at once ({harness.DUET_ROUNDS} rounds; req/s are shares of one core; for "
             f"reference, not the target: it reads a known cost low, see bench/README.md):",
             f"{'variant':<30} {'req/s':>9} {'conns':>5} {'paired':>7} {'round by round':>32} {'cpu us/req':>11}"]
    for name, r in d.results.items():
        rounds = [s / f for s, f in zip(r.samples, d.results[base].samples, strict=True)]
        spread = f"{min(rounds):.3f}-{max(rounds):.3f}"
        lines.append(f"{name:<30} {r.rps:>9.0f} {r.connections:>5} {d.paired[name]:>7.3f} {spread:>32} "
                     f"{r.cpu_us:>11.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    for line in run():
        print(line)
