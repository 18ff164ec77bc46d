"""Authenticator and QR peers nobody here wrote: oathtool makes the codes, zbarimg reads the QR code.

Both adapters, real HTTP through the real middleware, a real redis-server, and the real clock (oathtool reads
the system clock, so the gate does too).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path

import pyotp
import pytest

from tests.gate_harness import ADAPTERS, Browser, Site, backup_codes_of, csrf_of, key_of

SHA256_8 = {"totp_digest": "sha256", "totp_digits": 8}


def oathtool(key: str, *extra: str) -> list[str]:
    """Codes oathtool prints for a key typed as shown (groups of four): now, then the next steps."""
    out = subprocess.run(["oathtool", *extra, "-b", key], capture_output=True, text=True, check=True).stdout
    return out.split()


def svg_of(page: str) -> str:
    m = re.search(r"<svg.*?</svg>", page, re.S)
    assert m, "no inline SVG on the setup page"
    return m.group(0)


def scan_qr(svg: str) -> str:
    """Render the page's SVG to PNG with rsvg-convert and decode it with zbarimg, as a phone camera would."""
    with tempfile.TemporaryDirectory() as tmp:
        svg_path, png_path = Path(tmp) / "qr.svg", Path(tmp) / "qr.png"
        svg_path.write_text(svg)
        subprocess.run(["rsvg-convert", "-f", "png", "-o", str(png_path), str(svg_path)], check=True)
        return scan_png(png_path)


def scan_png(path: Path) -> str:
    out = subprocess.run(["zbarimg", "--raw", "-q", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, f"zbarimg found no code in {path}: {out.stderr}"
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def real_clock_site(kind: str, redis_url: str, **gate: object) -> Site:
    return Site(kind, redis_url, gate={"clock": time.time, **gate})


async def open_setup(site: Site, username: str) -> tuple[Browser, str, str]:
    """A logged-in browser on the setup page: the browser, the page, the key as shown (with spaces)."""
    site.add_account(username)
    b = site.browser()
    assert (await b.login(username)).status_code == 303
    r = await b.get("/mfa/setup")
    assert r.status_code == 200
    shown = re.search(r"data-totp-key>([^<]+)<", r.text)
    assert shown and shown.group(1).replace(" ", "") == key_of(r.text)
    return b, r.text, shown.group(1)


async def enable_with(b: Browser, page: str, code: str) -> list[str]:
    r = await b.post("/mfa/setup", {"csrf_token": csrf_of(page), "password": "correct horse battery", "code": code})
    assert r.status_code == 303 and r.headers["location"] == "/mfa/backup-codes", r.text
    codes = backup_codes_of((await b.get("/mfa/backup-codes")).text)
    assert len(codes) == 10
    return codes


async def verify_with(b: Browser, code: str) -> int:
    r = await b.get("/mfa/verify?next=/")
    r = await b.post("/mfa/verify?next=/", {"csrf_token": csrf_of(r.text), "code": code})
    return r.status_code


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_oathtool_default_codes_enable_and_verify(kind: str, redis_url: str) -> None:
    site = real_clock_site(kind, redis_url)
    b, page, key = await open_setup(site, "alice")
    now_code, next_code = oathtool(key.replace(" ", ""), "--totp", "-w", "1")
    await enable_with(b, page, now_code)
    await b.logout()
    assert (await b.login("alice")).status_code == 303
    assert (await b.get("/")).headers["location"].startswith("/mfa/verify")
    # The enrollment code's step is spent; the next step is inside the ±1 drift window, so the code the app
    # will show next is accepted at once instead of waiting up to 30 s.
    assert await verify_with(b, now_code) == 401
    assert await verify_with(b, next_code) == 303
    r = await b.get("/")
    assert r.status_code == 200 and r.json()["mfa"]["verified"]


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_oathtool_accepts_key_typed_with_spaces_and_lowercase(kind: str, redis_url: str) -> None:
    site = real_clock_site(kind, redis_url)
    b, page, key = await open_setup(site, "bob")
    # oathtool decodes base32 itself; people copy the grouped key, so feed it exactly as the page shows it.
    (code,) = oathtool(key.lower().replace(" ", ""), "--totp")
    await enable_with(b, page, code)


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_oathtool_sha256_eight_digit_variant(kind: str, redis_url: str) -> None:
    site = real_clock_site(kind, redis_url, **SHA256_8)
    b, page, key = await open_setup(site, "carol")
    assert "8-digit" in page
    uri = scan_qr(svg_of(page))
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP) and totp.digits == 8 and totp.digest().name == "sha256"
    key = key.replace(" ", "")
    (sha1_code,) = oathtool(key, "--totp")
    r = await b.post("/mfa/setup", {"csrf_token": csrf_of(page), "password": "correct horse battery",
                                    "code": sha1_code})
    assert r.status_code == 400  # a default-settings app's code does not fit this site
    now_code, next_code = oathtool(key, "--totp=sha256", "--digits=8", "-w", "1")
    assert len(now_code) == 8
    assert totp.now() in (now_code, next_code) or totp.at(time.time() - 30) == now_code
    await enable_with(b, (await b.get("/mfa/setup")).text, now_code)
    await b.logout()
    assert (await b.login("carol")).status_code == 303
    assert await verify_with(b, next_code) == 303


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_zbarimg_reads_setup_qr_back_to_same_secret_issuer_account(kind: str, redis_url: str) -> None:
    site = real_clock_site(kind, redis_url, issuer="Example DNS & Co")
    b, page, key = await open_setup(site, "dave@example.test")
    uri = scan_qr(svg_of(page))
    assert uri.startswith("otpauth://totp/")
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    assert totp.secret == key.replace(" ", "")
    assert totp.issuer == "Example DNS & Co"
    account_id = site.store.run(site.accounts.get("dave@example.test"))
    assert account_id is not None and totp.name == account_id.id
    assert totp.digits == 6 and totp.interval == 30 and totp.digest().name == "sha1"
    # The scanned secret works as an app would use it, and agrees with oathtool.
    (tool_code,) = oathtool(totp.secret, "--totp")
    assert tool_code in (totp.now(), totp.at(time.time() - 30), totp.at(time.time() + 30))
    await enable_with(b, page, totp.now())
