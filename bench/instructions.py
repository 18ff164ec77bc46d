"""Dev tool: CPU instructions per verified request under uvicorn, with and without the gate (callgrind).

``.venv/bin/python -m bench.instructions [--requests N] [--apps session,gated,session+cookie] [--top K]``

Requests per second on this VM move from one run to the next by more than a small change costs (neighbours
on the host: steal time and a per-request CPU cost that changes by itself). This counts
instead: each app of ``bench.gate_apps`` is served by the real uvicorn (uvloop, httptools) running under
valgrind's callgrind with instrumentation off; a browser signs in (and, for the gated app, enrolls, which
leaves its session verified), warms the server up, then instrumentation is switched on for exactly N
requests on one keep-alive connection and off again. The count is the same from run to run to within a
fraction of a percent. It is user-space instructions of the server process only: the kernel's part of a
request (sockets, epoll, a large share of a request's CPU time under wrk) is not in it, nor are cache
misses, so the ratio here is an upper bound of the req/s ratio, not the target (``bench gate_overhead``).

``APP+cookie`` is APP sent the gated app's ``mfa_session`` cookie besides its own login cookie (a stand-in
of the same length if the gated app has not run yet). ``session+cookie`` is then the session app sent the
gated app's Cookie header: the gated app's count less this one is the gate's own code, this one less
``session`` the cost of the longer header to httptools and Starlette.

Any other ``module:factory`` (e.g. a variant in a scratch module on ``PYTHONPATH``) is served the same way,
its browser signed in as the session app's; it needs the ``/login`` route of ``bench.gate_apps``' apps.

``--top K`` prints the K C-level functions (the interpreter's, libraries') whose count grew most from the
first app to each other one: e.g. a longer Cookie header shows up in ``llhttp`` and ``siphash13``.

Needs valgrind (``apt-get install valgrind``) and redis-server.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import harness
from bench.gate_overhead import sessions
from tests.servers import free_port, wait_for_port

STARTUP_SECONDS = 180.0  # uvicorn's start under valgrind takes ~15 s here
MFA_COOKIE_LENGTH = 175  # "mfa_session=" value of a verified session, as the gate writes it
APPS = ("bare", "session", "gated")
WARMUP = 300  # requests before counting: imports done lazily, caches filled, the memo of the header made


@dataclass
class Count:
    app: str
    requests: int
    instructions: int  # in the counted requests, all of them
    functions: dict[str, int]  # per C-level function (callgrind_annotate), for --top
    cookie: str  # the Cookie header sent

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests


def _totals(path: Path) -> int:
    text = path.read_text()
    found = re.search(r"^totals:\s*(\d+)", text, re.M) or re.search(r"^summary:\s*(\d+)", text, re.M)
    if not found:
        raise RuntimeError(f"no totals in {path}")
    return int(found.group(1))


def _functions(path: Path) -> dict[str, int]:
    out = subprocess.run(["callgrind_annotate", "--threshold=100", str(path)], capture_output=True, text=True,
                         check=False).stdout
    functions: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*)", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        name = re.sub(r" \[.*$", "", m.group(2))
        name = re.sub(r"^.*?/(Python-[\d.]+|src|project)/", "", name)
        functions[name] = functions.get(name, 0) + int(m.group(1).replace(",", ""))
    return functions


def count(app: str, redis_url: str, requests: int, workdir: Path, top: bool, mfa_cookie: str, user: str) -> Count:
    """Serve ``app`` under callgrind and count ``requests`` requests of a signed-in browser; ``mfa_cookie``:
    the gate's cookie (``name=value``) that an ``APP+cookie`` adds to its own; ``user``: the new user's name
    prefix (the same length for every app: the login cookie carries it)."""
    port = free_port()
    spec = app.removesuffix("+cookie")
    factory = spec if ":" in spec else "bench.gate_apps:" + spec
    out = workdir / f"{len(os.listdir(workdir))}.callgrind"
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
           sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        try:
            wait_for_port(port, timeout=STARTUP_SECONDS, proc=proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{app}: {exc}") from None
        base = f"http://127.0.0.1:{port}"
        try:
            cookie = sessions(base, redis_url, spec == "gated", user)() if spec != "bare" else ""
        except AssertionError:  # bench.gate_overhead's sign-in checks each answer with assert
            raise RuntimeError(f"{app}: signing in through its /login failed") from None
        if app.endswith("+cookie"):
            cookie = f"{cookie}; {mfa_cookie}" if cookie else mfa_cookie
        headers = {"Cookie": cookie} if cookie else {}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def get(n: int) -> None:
            for _ in range(n):
                conn.request("GET", "/", headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200 or response.getheader("set-cookie"):
                    raise RuntimeError(f"{app}: answered {response.status} "
                                       f"{'with' if response.getheader('set-cookie') else 'without'} a Set-Cookie")

        get(WARMUP)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        get(requests)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)  # callgrind writes its file as the server exits
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return Count(app, requests, _totals(out), _functions(out) if top else {}, cookie)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--apps", default="session,gated,session+cookie",
                        help=f"any of {', '.join(APPS)} or module:factory, each optionally +cookie")
    parser.add_argument("--top", type=int, default=0, metavar="K")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control", "redis-server") if not shutil.which(tool)]
    if missing:
        print(f"bench.instructions: needs {', '.join(missing)} (apt-get install valgrind redis-server)",
              file=sys.stderr)
        return 2
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    unknown = [a for a in apps if a.removesuffix("+cookie") not in APPS and ":" not in a]
    if unknown or args.requests < 1:
        parser.error(f"unknown app {unknown[0]!r}" if unknown else "--requests must be at least 1")
    mfa_cookie, counts = "mfa_session=" + "A" * MFA_COOKIE_LENGTH, []
    try:
        with tempfile.TemporaryDirectory() as tmp, harness.redis_server() as redis:
            for i, app in enumerate(apps):
                counts.append(count(app, redis.url, args.requests, Path(tmp), args.top > 0, mfa_cookie,
                                    f"u{i:02d}"))
                if app == "gated":  # its own cookie, for the +cookie variants after it
                    mfa_cookie = next(c for c in counts[-1].cookie.split("; ") if c.startswith("mfa_session="))
    except (RuntimeError, OSError, subprocess.CalledProcessError, http.client.HTTPException) as exc:
        print(f"bench.instructions: {exc}", file=sys.stderr)
        return 1
    first = counts[0]
    print(f"user-space instructions per request under uvicorn (callgrind, {args.requests} requests, one "
          f"keep-alive connection):")
    print(f"{'app':<15} {'instr/req':>11} {'vs ' + first.app:>12} {'more':>9}")
    for c in counts:
        print(f"{c.app:<15} {c.per_request:>11.0f} {first.per_request / c.per_request:>12.3f} "
              f"{c.per_request - first.per_request:>9.0f}")
    for c in counts[1:] if args.top else []:
        print(f"\n{c.app} against {first.app}, per request, the {args.top} functions that grew most:")
        grown = sorted(set(c.functions) | set(first.functions),
                       key=lambda f: first.functions.get(f, 0) - c.functions.get(f, 0))
        for f in grown[:args.top]:
            delta = (c.functions.get(f, 0) - first.functions.get(f, 0)) / args.requests
            print(f"{delta:>9.0f}  {f[:100]}")
    harness.save("instructions", {"machine": harness.machine(), "requests": args.requests,
                                  "per_request": {c.app: c.per_request for c in counts}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
