"""Throwaway real servers for the suite, each on a free loopback port in its own temp dir."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, proc: subprocess.Popen[Any] | None = None) -> None:
    """Until something accepts on 127.0.0.1:``port``; RuntimeError after ``timeout`` or once ``proc`` (the
    server meant to listen there) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited at start (exit status {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(*procs: subprocess.Popen[Any] | None, timeout: float = 5) -> None:
    """Ask servers to exit (all at once, waking any a test froze), and kill those that will not."""
    running = [p for p in procs if p is not None]
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
    for proc in running:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Server:
    """A server process with its own temp dir: ``stop`` it (it may be started again), ``cleanup`` for good."""

    proc: subprocess.Popen[bytes] | None
    dir: Path

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class AppServer(_Server):
    """A web server process (uvicorn, gunicorn, waitress, a demo) on a free port: every ``PORT`` in ``args``
    becomes the port, and ``PORT`` is in its environment too (the demos read it). Its stdout and stderr go
    to ``log`` (``output()``), where a test looks for tracebacks."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], timeout: float = 30) -> None:
        self.name = name
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.log = self.dir / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([a.replace("PORT", str(self.port)) for a in args],
                                         env={**env, "PORT": str(self.port)}, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, timeout, self.proc)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{name}: {exc}\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class RedisServer(_Server):
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



class KnotServer(_Server):
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



class RedisCluster:
    """A real 3-master Redis Cluster (no replicas) on free loopback ports, each node in its own directory."""

    def __init__(self, masters: int = 3) -> None:
        exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if exe is None or cli is None:
            raise RuntimeError("redis-server/redis-cli are not installed: run the suite with `make test`")
        self.exe, self.cli = exe, cli
        self.ports = [self._cluster_port() for _ in range(masters)]
        self.dir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    @staticmethod
    def _cluster_port() -> int:
        """A free port whose cluster bus port (port + 10000) exists and is free too."""
        for _ in range(200):
            port = free_port()
            if port + 10000 > 65535:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
        raise RuntimeError("no free port pair for a cluster node")

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def _node(self, port: int) -> subprocess.Popen[bytes]:
        node = self.dir / str(port)
        node.mkdir(exist_ok=True)
        return subprocess.Popen(
            [self.exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node), "--save", "",
             "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", str(node / "nodes.conf"),
             "--cluster-node-timeout", "2000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> RedisCluster:
        for port in self.ports:
            self.procs.append(self._node(port))
        for port in self.ports:
            wait_for_port(port)
        subprocess.run([self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [subprocess.run([self.cli, "-p", str(p), "cluster", "info"], capture_output=True, text=True,
                                     timeout=5).stdout for p in self.ports]
            if all("cluster_state:ok" in s for s in states):
                return self
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def kill_node(self, i: int) -> None:
        """Crash node ``i`` (SIGKILL): no persistence, so its keys are gone for good."""
        self.procs[i].kill()
        self.procs[i].wait()

    def signal_node(self, i: int, sig: int) -> None:
        """e.g. SIGSTOP (a hung node: connections open, nothing answers) and SIGCONT."""
        os.kill(self.procs[i].pid, sig)

    def restart_node(self, i: int) -> None:
        """Start a killed node again on its port with its cluster config file: it rejoins with its slots."""
        self.procs[i] = self._node(self.ports[i])
        wait_for_port(self.ports[i])

    def cleanup(self) -> None:
        stop_process(*self.procs)
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisSentinelSetup:
    """One primary, one replica and ``sentinels`` Sentinel processes (quorum: a majority) on free ports."""

    def __init__(self, service: str = "mymaster", sentinels: int = 3) -> None:
        exe = shutil.which("redis-server")
        sentinel = shutil.which("redis-sentinel")
        if exe is None or sentinel is None:
            raise RuntimeError("redis-server/redis-sentinel are not installed: run the suite with `make test`")
        self.exe, self.sentinel_exe = exe, sentinel
        self.service = service
        self.dir = Path(tempfile.mkdtemp(prefix="redis-sentinel-"))
        self.data_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.quorum = sentinels // 2 + 1
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{self.service}"

    def _data_node(self, port: int, replica_of: int | None) -> None:
        node = self.dir / str(port)
        node.mkdir(exist_ok=True)
        args = [self.exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node), "--save", "",
                "--appendonly", "yes", "--appendfsync", "always"]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        else:
            # Bounds the failover window (README "Sentinel: the failover window"): a primary cut off from its
            # replica, such as the old one after a failover, refuses writes after 2 s instead of taking
            # writes the new primary never sees.
            args += ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "2"]
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port)

    def start(self) -> RedisSentinelSetup:
        primary, replica = self.data_ports
        self._data_node(primary, None)
        self._data_node(replica, primary)
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                            f"sentinel monitor {self.service} 127.0.0.1 {primary} {self.quorum}\n"
                            f"sentinel down-after-milliseconds {self.service} 1000\n"
                            f"sentinel failover-timeout {self.service} 5000\n"
                            f"sentinel parallel-syncs {self.service} 1\n")
            self.procs[port] = subprocess.Popen([self.sentinel_exe, str(conf)], stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
            wait_for_port(port)
        self.wait_for(lambda: self.primary_port() == primary and self._replica_synced())
        return self

    def cli(self, port: int, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                              timeout=5).stdout

    def primary_port(self, sentinel: int | None = None) -> int | None:
        """The primary's port as one Sentinel (the first by default) names it."""
        port = self.sentinel_ports[0] if sentinel is None else sentinel
        out = self.cli(port, "sentinel", "get-master-addr-by-name", self.service).split()
        return int(out[1]) if len(out) == 2 else None

    def _replica_synced(self) -> bool:
        """Every Sentinel knows the replica, sees it healthy, and the replica is in sync."""
        info = self.cli(self.data_ports[1], "info", "replication")
        for port in self.sentinel_ports:
            fields = self.cli(port, "sentinel", "replicas", self.service).split("\n")
            pairs = dict(zip(fields[0::2], fields[1::2], strict=False))
            if pairs.get("flags") != "slave" or pairs.get("master-link-status") != "ok":
                return False
        return "master_link_status:up" in info

    def failover(self) -> int:
        """Ask a Sentinel to promote the replica; returns the new primary's port once every Sentinel agrees."""
        old = self.primary_port()
        out = ""
        for _ in range(50):  # NOGOODSLAVE until the Sentinel has fresh INFO from the replica
            out = self.cli(self.sentinel_ports[0], "sentinel", "failover", self.service)
            if "OK" in out:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"sentinel failover refused: {out}")
        self.wait_for(lambda: self.primary_port() not in (None, old))
        new = self.primary_port()
        assert new is not None
        # Every Sentinel, not just the first: a client asks whichever answers, and one still naming the old
        # primary would keep it there for another check interval (seen: 0.5-1.6 s counted as the driver's).
        self.wait_for(lambda: all(self.primary_port(port) == new for port in self.sentinel_ports))
        return new

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise RuntimeError("the Sentinel setup did not settle in time")

    def cleanup(self) -> None:
        stop_process(*self.procs.values())
        self.procs = {}
        shutil.rmtree(self.dir, ignore_errors=True)
