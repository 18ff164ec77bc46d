"""The demo site (gate + /nic/update) as real uvicorn processes on loopback ports, and HTTP helpers to log in,
pass the second factor and send updates to them. Used by the fault, race and scale-out tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mfa_middleware.accounts import Accounts
from mfa_middleware.gate import Gate
from mfa_middleware.passwords import FAST, PasswordHasher
from mfa_middleware.store import Store, open_store
from mfa_middleware.totp import TotpParams, code_at, current_step
from tests.servers import free_port, stop_process, wait_for_port

SECRET, ENC = "reliability-secret-key-0123456789", "reliability-encryption-key-012345"
PASSWORD = "user-password-123"
AGENT = "reliability-test/1.0 ops@example.test"


@dataclass
class App:
    """``python -m examples.demo`` (Starlette: login, the ASGI gate, /nic/update) as a child process."""

    redis_url: str
    log_dir: Path
    name: str = "app"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self) -> App:
        env = {**os.environ, "REDIS_URL": self.redis_url, "MFA_SECRET_KEY": SECRET, "MFA_ENCRYPTION_KEY": ENC,
               "HOST": "127.0.0.1", "PORT": str(self.port), "DEMO_SEED": "0"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "examples.demo"], env=env, stdout=out, stderr=out)
        wait_for_port(self.port, timeout=30)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> str:
        """Stop the process; its log (the tests assert it holds no traceback)."""
        stop_process(self.proc, timeout=10)
        self.proc = None
        return self.log.read_text() if self.log.exists() else ""


def csrf_of(text: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert m, f"no CSRF token in page: {text[:300]}"
    return m.group(1)


@dataclass
class User:
    """An account with 2FA on, made directly in the store (what `mfa-admin` and the setup page would do)."""

    name: str
    seed: str
    backup_codes: list[str]

    def code(self, offset_steps: int = 0, now: float | None = None) -> str:
        params = TotpParams()
        return code_at(self.seed, current_step(time.time() if now is None else now, params) + offset_steps, params)


def make_user(store: Store, name: str, hosts: tuple[str, ...] = (), enroll: bool = True) -> User:
    from ddns_update.hosts import Hosts

    store.run(Accounts(store.keys, PasswordHasher(FAST)).create(name, PASSWORD))
    if hosts:
        store.run(Hosts(store.keys).add(name, hosts))
    if not enroll:
        return User(name, "", [])
    gate = Gate(keys=store.keys, secret_key=SECRET, encryption_keys=ENC)
    seed = store.run(gate.twofactor.begin_enrollment(name))
    # Enrol with the previous step's code, so the current step is still free for the test's first verify.
    params = TotpParams()
    codes = store.run(gate.twofactor.confirm_enrollment(name, code_at(seed, current_step(time.time(), params) - 1,
                                                                       params)))
    assert codes, "2FA could not be enabled"
    return User(name, seed, codes)


def open_test_store(url: str) -> Store:
    return open_store(url)


class Browser:
    """One browser (cookie jar) on one app instance."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=timeout)

    def move_to(self, base_url: str) -> None:
        """The same cookies against another instance (a load balancer sent us elsewhere)."""
        self.client.base_url = httpx.URL(base_url)

    def login(self, user: str, password: str = PASSWORD) -> httpx.Response:
        page = self.client.get("/login")
        return self.client.post("/login", data={"username": user, "password": password,
                                                "csrf_token": csrf_of(page.text)})

    def verify(self, code: str) -> httpx.Response:
        page = self.client.get("/mfa/verify")
        return self.client.post("/mfa/verify", data={"code": code, "csrf_token": csrf_of(page.text)})

    def backup(self, code: str) -> httpx.Response:
        page = self.client.get("/mfa/verify/backup")
        return self.client.post("/mfa/verify/backup", data={"backup_code": code, "csrf_token": csrf_of(page.text)})

    def home(self, **kw: Any) -> httpx.Response:
        return self.client.get("/", **kw)

    def close(self) -> None:
        self.client.close()


def update(client: httpx.Client, user: str, host: str, ip: str, password: str = PASSWORD) -> httpx.Response:
    return client.get("/nic/update", params={"hostname": host, "myip": ip}, auth=(user, password),
                      headers={"user-agent": AGENT})


@dataclass
class DemoRun:
    """A demo started as ``python -m MODULE`` on a free port with the embedded store (``make run``)."""

    url: str
    port: int
    stdout: str = ""


@contextmanager
def run_demo(module: str) -> Iterator[DemoRun]:
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "DEMO_SEED": "1"}
    for name in ("REDIS_URL", "MFA_SECRET_KEY", "MFA_ENCRYPTION_KEY"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", module], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run = DemoRun(f"http://127.0.0.1:{port}", port)
    try:
        wait_for_port(port, timeout=30)
        yield run
    finally:
        proc.terminate()
        run.stdout, err = proc.communicate(timeout=10)
        assert "Traceback" not in err, err
