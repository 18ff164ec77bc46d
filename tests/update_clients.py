"""Real update clients and raw HTTP, for the tests that drive served endpoints: Debian's ddclient 3.10 and
inadyn 2.10 run once each (one-shot, foreground, own cache), and requests written byte for byte as they send
them, read back without an HTTP library so that framing faults (chunking, a wrong Content-Length) show."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mfa_middleware.gate import Gate
from mfa_middleware.store import open_store
from mfa_middleware.totp import TotpParams, code_at, current_step

DDCLIENT_AGENT = "ddclient/3.10.0"
INADYN_AGENT = "inadyn/2.10.0 https://github.com/troglobit/inadyn/issues"


def ddclient(tmp: Path, port: str | int, login: str, password: str, hosts: str, ip: str | None = None,
             web: str | None = None) -> str:
    """One ddclient run updating ``hosts`` (comma-separated, one line: one request) with ``ip``, or with the
    address ``web`` (a check-IP URL) reports; its stdout and stderr together."""
    conf = tmp / "ddclient.conf"
    use = f"use=web, web={web}" if web else f"use=ip, ip={ip}"
    # ddclient treats '#' as a comment even inside quotes: generated credentials never contain one.
    conf.write_text(f"daemon=0\nssl=no\n{use}\nprotocol=dyndns2\nserver=127.0.0.1:{port}\n"
                    f"login={login}\npassword={password}\n{hosts}\n")
    conf.chmod(0o600)
    r = subprocess.run(["ddclient", "-daemon=0", "-file", str(conf), "-cache", str(tmp / "cache"), "-foreground",
                        "-verbose", "-debug", "-force"], capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


def inadyn(tmp: Path, port: str | int, login: str, password: str, hosts: str | Sequence[str],
           ip: str | None = None) -> subprocess.CompletedProcess[str]:
    """One inadyn run (custom provider, one request per host) updating ``hosts`` with ``ip``, or with the
    address the server's own ``/nic/checkip`` reports (``ip=None``)."""
    names = [hosts] if isinstance(hosts, str) else list(hosts)
    listed = names[0] if len(names) == 1 else "{ " + ", ".join(f'"{h}"' for h in names) + " }"
    if ip is None:
        checkip = f"checkip-server = 127.0.0.1:{port}\n    checkip-path = /nic/checkip\n    checkip-ssl = false"
    else:
        checkip = f'checkip-command = "echo {ip}"'
    conf = tmp / "inadyn.conf"
    # verify-address = false: inadyn refuses loopback and private addresses as "not a valid Internet address",
    # and the test's address is 127.0.0.1.
    conf.write_text(f"""period = 300
verify-address = false
custom test {{
    ssl = false
    username = {login}
    password = {password}
    ddns-server = 127.0.0.1:{port}
    ddns-path = "/nic/update?hostname=%h&myip=%i"
    {checkip}
    hostname = {listed}
}}
""")
    (tmp / "cache").mkdir(exist_ok=True)
    return subprocess.run(["inadyn", "-1", "--force", "-n", "-l", "debug", "--no-pidfile",
                           f"--cache-dir={tmp / 'cache'}", "-f", str(conf)], capture_output=True, text=True, timeout=60)


def enable_2fa(url: str, account: str, secret_key: str, encryption_key: str) -> None:
    """Turn 2FA on for ``account`` in the store at ``url``: its browser logins need a code, its router must
    not care."""
    store = open_store(url)
    gate = Gate(keys=store.keys, secret_key=secret_key, encryption_keys=encryption_key)
    seed = store.run(gate.twofactor.begin_enrollment(account))
    params = TotpParams()
    code = code_at(seed, current_step(time.time(), params), params)
    assert store.run(gate.twofactor.confirm_enrollment(account, code)), "2FA could not be enabled"
    assert store.run(gate.twofactor.status(account)).enabled
    store.close()


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


def request(method: str, target: str, port: int, version: str = "1.1", headers: Sequence[tuple[str, str]] = (),
            close: bool = True) -> bytes:
    """A request as the clients write it: CRLF line ends, Host first, ``Connection: close`` for HTTP/1.1
    as ddclient sends it (``close=False`` leaves the connection open: the server must frame its reply)."""
    lines = [f"{method} {target} HTTP/{version}", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers)]
    if version == "1.1" and close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class RawReply:
    status_line: str
    headers: list[tuple[str, str]]  # as sent, names lower-cased
    body: bytes
    extra: bytes  # bytes after the Content-Length's end (must be none)

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times: {self.headers}"
        return values[0] if values else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


_STATUS_LINE = re.compile(r"HTTP/1\.[01] [1-5]\d\d [^\r\n]*")


def exchange(port: int, raw: bytes, *, head: bool = False, timeout: float = 10.0) -> RawReply:
    """Send ``raw`` and read one reply the strict way: a status line, headers, then exactly Content-Length
    bytes of body (none for ``head``). Chunked framing or a missing Content-Length fails the test; with
    ``Connection: close`` anything after the declared body is caught in ``extra``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed inside the headers: {data!r}"
            data += chunk
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
        assert _STATUS_LINE.fullmatch(status_line), status_line
        headers = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in header_lines)]
        assert not any(k == "transfer-encoding" for k, _ in headers), f"framed by transfer-encoding: {headers}"
        lengths = [v for k, v in headers if k == "content-length"]
        assert len(lengths) == 1, f"Content-Length sent {len(lengths)} times: {headers}"
        length = 0 if head else int(lengths[0])
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(rest)} of {length} body bytes"
            rest += chunk
        extra = rest[length:]
        if any(k == "connection" and v.lower() == "close" for k, v in headers) or b"Connection: close" in raw:
            sock.settimeout(2.0)
            try:
                while chunk := sock.recv(65536):
                    extra += chunk
            except TimeoutError:
                pass
        return RawReply(status_line, headers, rest[:length], extra)
