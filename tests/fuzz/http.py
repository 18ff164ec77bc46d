"""Malformed HTTP requests as raw bytes, and a raw-socket sender (httpx refuses to send most of these).

``requests_for(site, n, seed)`` yields ``n`` reproducible hostile requests for a site; ``blast`` sends them
concurrently and returns the status codes seen (0 = the server closed without answering).
"""

from __future__ import annotations

import base64
import random
import socket
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote

METHODS = [b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE", b"CONNECT", b"PRI",
           b"get", b"PoSt", b"FOO", b"G\x00T", b"GET\xff", b"", b"GET GET", b"M" * 300, b"POST\t", b"\xc3\xa9"]
NASTY_SEGMENTS = [b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"%ff", b"%c3%28", b"%00", b"%0d%0a", b"..", b"%2e%2e",
                  b"%2f", b"//", b"\\", b";a=b", b"%", b"%zz", b"\x00", b"\x7f", b"\xe2\x80\xae", b"~", b"*",
                  b"%25", b"+", b"%u0041", b"\xf0\x9f\x92\xa9", b"%F0%9F%92%A9"]
QUERY_BITS = [b"next=//evil.example", b"next=/%0d%0aSet-Cookie:x=1", b"next=\xff", b"next=%ff%fe", b"next=",
              b"next=javascript:alert(1)", b"next=/\\evil", b"hostname=", b"hostname=a.example.test",
              b"hostname=" + b",".join([b"h%d.example.test" % i for i in range(30)]), b"myip=999.1.1.1",
              b"myip=::ffff:1.2.3.4,1.2.3.4,::1", b"myipv6=fe80::1%25eth0", b"offline=YES", b"offline=\xff",
              b"=", b"&", b"&&&", b"a", b"%", b"%zz=%zz", b"\xff=\xfe", b"k=" + b"v" * 5000, b"system=dyndns",
              b"hostname=\xe4\xbe\x8b\xe3\x81\x88.test", b"hostname=xn--zz.test", b"code=%00", b";;;"]
CONTENT_TYPES = [b"application/x-www-form-urlencoded", b"application/x-www-form-urlencoded; charset=latin-1",
                 b"application/x-www-form-urlencoded; charset=\xff", b"multipart/form-data",
                 b"multipart/form-data; boundary=", b"multipart/form-data; boundary=xyz",
                 b'multipart/form-data; boundary="' + b"b" * 200 + b'"', b"application/json", b"text/plain",
                 b"text/html; charset=utf-8", b"\xff\xfe", b"", b"application/x-www-form-urlencoded\x00",
                 b"*/*", b"application/octet-stream"]
FORM_FIELDS = [b"csrf_token", b"code", b"backup_code", b"password", b"question", b"answer", b"remember",
               b"username", b"group", b"value", b"hosts", b"next"]


@dataclass
class Target:
    """One server under test: its port, the paths worth hitting, and cookies of a logged-in browser."""

    port: int
    paths: list[bytes]
    form_paths: list[bytes]
    session_cookies: list[bytes] = field(default_factory=list)  # Cookie headers of real logged-in browsers
    csrf: list[bytes] = field(default_factory=list)  # valid CSRF tokens for those sessions
    basic_paths: list[bytes] = field(default_factory=list)


def _garbage(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(n))


def _path(rng: random.Random, t: Target) -> bytes:
    base = rng.choice(t.paths + t.form_paths + t.basic_paths)
    roll = rng.random()
    if roll < 0.35:
        return base
    if roll < 0.7:
        return base + b"/" + b"".join(rng.choice(NASTY_SEGMENTS) for _ in range(rng.randint(1, 4)))
    if roll < 0.8:
        return base + b"/" + b"a" * rng.choice([1000, 7000, 20000])
    if roll < 0.9:
        return rng.choice([b"*", b"http://evil.example/", b"http://127.0.0.1/mfa/verify", b"mfa", b"",
                           b"/%", b"/\xff", b"//mfa/verify", b"/mfa/../mfa/verify", b"/MFA/VERIFY"])
    return b"/" + _garbage(rng, rng.randint(1, 40)).replace(b" ", b"").replace(b"\r", b"").replace(b"\n", b"")


def _query(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.3:
        return b""
    if roll < 0.85:
        return b"?" + b"&".join(rng.choice(QUERY_BITS) for _ in range(rng.randint(1, 6)))
    if roll < 0.92:
        return b"?" + b"&".join(b"k%d=v" % i for i in range(rng.choice([101, 1000, 3000])))
    return b"?" + _garbage(rng, rng.randint(1, 100)).replace(b" ", b"+").replace(b"\r", b"").replace(b"\n", b"")


def _cookie(rng: random.Random, t: Target) -> bytes | None:
    roll = rng.random()
    if roll < 0.25:
        return None
    if roll < 0.5 and t.session_cookies:
        return rng.choice(t.session_cookies)  # a real logged-in browser, so the gate's views run
    choices = [
        b"mfa_session=" + _garbage(rng, 20).hex().encode(),
        b"mfa_session=abc.def.ghi; mfa_trust=\xff\xfe",
        b"mfa_trust=" + base64.urlsafe_b64encode(b'["alice","x"]') + b".AAAA.BBBB",
        b"demo_session=" + base64.b64encode(b'{"user":"demo"}') + b".x.y",
        b"session=\xff\xfe\xfd; demo_session=\x00",
        b'mfa_session="' + b"\\" * 50 + b'"',
        b"=; ;; =;=",
        b"a" * rng.choice([100, 8000, 60000]) + b"=b",
        b"mfa_session=" + b"A" * 5000,
        b"__Host-mfa_session=x; __Host-mfa_trust=y; $Version=1; $Path=/",
        _garbage(rng, rng.randint(1, 200)).replace(b"\r", b"").replace(b"\n", b""),
    ]
    cookie = rng.choice(choices)
    if t.session_cookies and rng.random() < 0.5:
        cookie = rng.choice(t.session_cookies) + b"; " + cookie  # a real session plus junk
    return cookie


def _form(rng: random.Random, t: Target) -> bytes:
    roll = rng.random()
    if roll < 0.5:
        fields = []
        for _ in range(rng.randint(0, 6)):
            name = rng.choice(FORM_FIELDS)
            if name == b"csrf_token" and t.csrf and rng.random() < 0.7:
                value = quote(rng.choice(t.csrf)).encode()
            else:
                value = rng.choice([b"", b"%ff", b"\xff\xfe", b"123456", b"000000", b"aaaa-bbbb-cccc-dddd-eeee-ffff",
                                    b"%00", b"x" * 2000, _garbage(rng, 20), b"on", b"%E2%80%AE", b"\xc3\x28"])
            fields.append(name + b"=" + value)
        return b"&".join(fields)
    if roll < 0.65:
        return b"&".join(b"f%d=%d" % (i, i) for i in range(rng.choice([1001, 5000])))
    if roll < 0.75:
        return b"a=" + b"x" * rng.choice([64 * 1024, 200_000, 1_100_000])
    if roll < 0.85:
        return b"--xyz\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\n123\r\n--xyz"  # no final --
    return _garbage(rng, rng.randint(0, 500))


def _basic(rng: random.Random) -> bytes:
    creds = rng.choice([b"demo:wrong", b"demo", b":", b"\xff\xfe:\xff", b"demo:" + b"p" * 5000, b"", b"a:b:c",
                        b"demo-group:x", _garbage(rng, 30)])
    token = base64.b64encode(creds)
    return rng.choice([b"Basic " + token, b"Basic " + token.rstrip(b"="), b"basic " + token, b"Basic",
                       b"Basic !!!!", b"Basic " + token + b"\xff", b"Bearer " + token, b"Basic  " + token,
                       b"Basic " + b"A" * 100_000, b"Basic " + base64.urlsafe_b64encode(creds),
                       b"Basic " + token[:-1]])


def build_request(rng: random.Random, t: Target) -> tuple[bytes, bool]:
    """One hostile request; the flag says whether it is deliberately incomplete (truncated body)."""
    method = rng.choice(METHODS) if rng.random() < 0.25 else rng.choice([b"GET", b"POST", b"POST", b"HEAD"])
    path = _path(rng, t) + _query(rng)
    version = rng.choice([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"", b"HTTP/9.9"])
    headers: list[bytes] = [b"Host: 127.0.0.1"] if rng.random() < 0.95 else []
    headers.append(b"Connection: close")
    cookie = _cookie(rng, t)
    if cookie is not None:
        headers.append(b"Cookie: " + cookie)
    if rng.random() < 0.4:
        headers.append(b"Authorization: " + _basic(rng))
    if rng.random() < 0.5:
        headers.append(b"User-Agent: " + rng.choice([b"fuzz/1.0", b"", b"\xff\xfe", b"curl/8", b"a" * 9000]))
    if rng.random() < 0.3:
        headers.append(b"Accept: " + rng.choice([b"application/json", b"text/html", b"*/*", b"\xff",
                                                 b"application/json, text/html"]))
    if rng.random() < 0.3:
        headers.append(b"X-Forwarded-For: " + rng.choice([b"1.2.3.4", b"\xff", b"::1, 10.0.0.1", b"a" * 500]))
    roll = rng.random()
    if roll < 0.05:
        headers.append(b"X-Huge: " + b"h" * rng.choice([10_000, 100_000, 1_000_000]))
    elif roll < 0.1:
        headers += [b"X-H%d: v" % i for i in range(rng.choice([100, 500, 2000]))]
    elif roll < 0.14:
        headers.append(rng.choice([b"Bad Header: x", b"X-Fold: a\r\n folded", b"NoColon", b": empty",
                                   b"X-Null: a\x00b", b"X-Ctl: \x01\x02", b"\xff: \xfe", b"Host: second.example"]))
    body = b""
    truncated = False
    if method.upper().startswith(b"POST") or method in (b"PUT", b"PATCH") or rng.random() < 0.1:
        body = _form(rng, t)
        if rng.random() < 0.85:
            headers.append(b"Content-Type: " + rng.choice(CONTENT_TYPES[:3] * 4 + CONTENT_TYPES))
        length_roll = rng.random()
        if length_roll < 0.7:
            headers.append(b"Content-Length: %d" % len(body))
        elif length_roll < 0.8:
            headers.append(b"Content-Length: %d" % (len(body) + rng.randint(1, 1000)))
            truncated = True
        elif length_roll < 0.85:
            headers.append(b"Content-Length: " + rng.choice([b"-1", b"abc", b"1e3", b"99999999999999999999",
                                                             b"0x10", b"", b"1, 2"]))
        elif length_roll < 0.93:
            headers.append(b"Transfer-Encoding: chunked")
            if rng.random() < 0.5:
                body = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
            else:
                body = rng.choice([b"zz\r\n" + body, b"5\r\nab", b"ffffffffffffffff\r\nx", body])
                truncated = True
        else:
            headers.append(b"Transfer-Encoding: " + rng.choice([b"gzip", b"chunked, gzip", b"identity", b"\xff"]))
            headers.append(b"Content-Length: %d" % len(body))
    head = method + b" " + path + (b" " + version if version else b"") + b"\r\n" + b"\r\n".join(headers)
    return head + b"\r\n\r\n" + body, truncated


def requests_for(t: Target, n: int, seed: int) -> Iterator[tuple[bytes, bool]]:
    rng = random.Random(seed)
    for _ in range(n):
        yield build_request(rng, t)


def send(port: int, raw: bytes, truncated: bool, timeout: float = 10.0) -> int:
    """Send one request; the response's status code, or 0 if the server closed without one."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
            if truncated:
                sock.shutdown(socket.SHUT_WR)  # the body never comes
        except OSError:  # the server refused mid-send (e.g. header too large) and closed
            pass
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if _complete(data):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    if not data.startswith(b"HTTP/"):
        return 0
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return -1


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value)
            except ValueError:
                return False
    return False  # read to EOF (Connection: close)


# 501 is the server's protocol answer to a transfer-coding it does not implement (RFC 9112 6.1), not a crash.
SERVER_ERRORS = frozenset({500, 502, 503, 504})


def blast(port: int, requests: list[tuple[bytes, bool]],
          workers: int = 16) -> tuple[Counter[int], list[tuple[int, bytes]]]:
    """Send everything concurrently; the status counts and the requests answered 500 (or unparsable)."""
    statuses: Counter[int] = Counter()
    bad: list[tuple[int, bytes]] = []
    with ThreadPoolExecutor(workers) as pool:
        for (raw, _), status in zip(requests, pool.map(lambda r: send(port, *r), requests), strict=True):
            statuses[status] += 1
            if status in SERVER_ERRORS or status < 0:
                bad.append((status, raw[:400]))
    return statuses, bad
