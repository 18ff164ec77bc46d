"""Throwaway real servers for the suite, each on a free loopback port in its own temp dir."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class RedisServer:
    """A real ``redis-server``; ``kill()``/``start()`` let fault tests restart it on the same port."""

    def __init__(self, *extra: str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: run the suite with `make test`")
        self.exe = exe
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", "--protected-mode", "yes", *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class KnotServer:
    """A real Knot DNS primary for ``zones``, accepting TSIG-signed updates for one key."""

    def __init__(self, zones: tuple[str, ...] = ("example.test",), key_name: str = "ddns-test") -> None:
        exe = shutil.which("knotd") or ("/usr/sbin/knotd" if os.path.exists("/usr/sbin/knotd") else None)
        if exe is None:
            raise RuntimeError("knotd is not installed: run the suite with `make test`")
        self.exe = exe
        self.zones = zones
        self.key_name = key_name
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="knot-test-"))
        self.algorithm, self.secret = self._make_key()
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _make_key(self) -> tuple[str, str]:
        keymgr = shutil.which("keymgr") or "/usr/sbin/keymgr"
        out = subprocess.run([keymgr, "-t", self.key_name, "hmac-sha256"], capture_output=True, text=True,
                             check=True).stdout
        # first line: "# hmac-sha256:NAME:SECRET"
        algorithm, _, secret = out.splitlines()[0].lstrip("# ").split(":", 2)
        return algorithm, secret

    def _write_config(self) -> None:
        (self.dir / "db").mkdir()
        zones = "\n".join(f"  - domain: {z}\n    acl: update" for z in self.zones)
        (self.dir / "knot.conf").write_text(f"""server:
    listen: 127.0.0.1@{self.port}
    rundir: {self.dir}
database:
    storage: {self.dir}/db
key:
  - id: {self.key_name}
    algorithm: {self.algorithm}
    secret: {self.secret}
acl:
  - id: update
    key: {self.key_name}
    action: update
template:
  - id: default
    storage: {self.dir}
    zonefile-sync: -1
    journal-content: all
zone:
{zones}
""")
        for zone in self.zones:
            (self.dir / f"{zone}.zone").write_text(
                f"$ORIGIN {zone}.\n$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n"
            )

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.dir / "knot.log"
        return path.read_text() if path.exists() else ""

    def start(self) -> KnotServer:
        log = open(self.dir / "knot.log", "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen([self.exe, "-c", str(self.dir / "knot.conf")], stdout=log, stderr=log)
        log.close()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
