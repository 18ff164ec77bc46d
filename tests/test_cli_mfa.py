"""mfa-admin through its real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def mfa_admin(*args: str, stdin: str = "", env_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if env_url is not None:
        env["REDIS_URL"] = env_url
    exe = os.path.join(os.path.dirname(sys.executable), "mfa-admin")
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60)


def test_add_then_show(redis_url: str) -> None:
    r = mfa_admin("user", "add", "Alice", "--password-stdin", stdin="long-enough-pw\n", env_url=redis_url)
    assert r.returncode == 0, r.stderr
    r = mfa_admin("--json", "user", "show", "alice", env_url=redis_url)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["username"] == "alice" and info["display_name"] == "Alice"
    r = mfa_admin("user", "show", "alice", "--redis-url", redis_url)
    assert r.returncode == 0 and "username: alice" in r.stdout


def test_duplicate_and_missing_accounts_exit_1(redis_url: str) -> None:
    assert mfa_admin("user", "add", "bob", "--password-stdin", stdin="pw-pw-pw-pw\n", env_url=redis_url).returncode == 0
    r = mfa_admin("user", "add", "BOB", "--password-stdin", stdin="pw-pw-pw-pw\n", env_url=redis_url)
    assert r.returncode == 1 and "taken" in r.stderr
    r = mfa_admin("user", "show", "nobody", env_url=redis_url)
    assert r.returncode == 1 and "no account" in r.stderr


def test_passwd(redis_url: str) -> None:
    mfa_admin("user", "add", "carol", "--password-stdin", stdin="first-password\n", env_url=redis_url)
    assert mfa_admin("user", "passwd", "carol", "--password-stdin", stdin="second-password\n",
                     env_url=redis_url).returncode == 0
    r = mfa_admin("user", "passwd", "carol", "--password-stdin", stdin="short\n", env_url=redis_url)
    assert r.returncode == 1 and "at least" in r.stderr
    r = mfa_admin("user", "passwd", "ghost", "--password-stdin", stdin="second-password\n", env_url=redis_url)
    assert r.returncode == 1


def test_wrong_usage_exits_2(redis_url: str) -> None:
    assert mfa_admin(env_url=redis_url).returncode == 2
    assert mfa_admin("user", env_url=redis_url).returncode == 2
    assert mfa_admin("user", "add", "x", env_url=redis_url).returncode == 2  # --password-stdin missing
    assert mfa_admin("user", "frobnicate", env_url=redis_url).returncode == 2
    r = mfa_admin("user", "add", "x", "--password-stdin", stdin="", env_url=redis_url)
    assert r.returncode == 2 and "no password" in r.stderr
    r = mfa_admin("user", "show", "x", "--redis-url", "ftp://nope")
    assert r.returncode == 2 and "scheme" in r.stderr


def test_no_store_configured_exits_2() -> None:
    r = mfa_admin("user", "show", "alice")
    assert r.returncode == 2
    assert "REDIS_URL" in r.stderr and "in-memory" in r.stderr
    assert "Traceback" not in r.stderr


def test_unreachable_store_is_a_clean_error() -> None:
    r = mfa_admin("user", "show", "alice", "--redis-url", "redis://127.0.0.1:1/0")
    assert r.returncode == 1 and "Traceback" not in r.stderr
