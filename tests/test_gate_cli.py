"""mfa-admin's 2FA commands (show, reset-2fa, check-answer, unlock) on state made through the real gate."""

from __future__ import annotations

import json

from mfa_middleware import ThrottlePolicy
from tests.gate_harness import PASSWORD, Site
from tests.test_cli_mfa import mfa_admin


async def test_show_check_answer_unlock_reset(redis_url: str) -> None:
    site = Site("asgi", redis_url, gate={"throttle": ThrottlePolicy(free_failures=0, base_ms=3_600_000)})
    b, _ = await site.new_user("alice")
    r = mfa_admin("--json", "user", "show", "alice", env_url=redis_url)
    info = json.loads(r.stdout)
    assert info["two_factor"] == "on" and info["backup_codes_left"] == 10
    assert info["locked_until"] is None and info["security_question_set"] is False

    await b.form("/mfa/security-question", {"question": "Street?", "answer": "Elm Street", "password": PASSWORD})
    assert mfa_admin("user", "check-answer", "alice", stdin="elm  STREET\n", env_url=redis_url).returncode == 0
    assert mfa_admin("user", "check-answer", "alice", stdin="oak street\n", env_url=redis_url).returncode == 1

    other = site.browser()
    await other.login("alice")
    assert (await other.form("/mfa/verify/backup", {"backup_code": "z" * 24})).status_code == 401
    info = json.loads(mfa_admin("--json", "user", "show", "alice", env_url=redis_url).stdout)
    assert info["locked_until"] and info["security_question_set"] is True
    assert mfa_admin("user", "unlock", "alice", env_url=redis_url).returncode == 0
    info = json.loads(mfa_admin("--json", "user", "show", "alice", env_url=redis_url).stdout)
    assert info["locked_until"] is None

    r = mfa_admin("user", "reset-2fa", "alice", env_url=redis_url)
    assert r.returncode == 0, r.stderr
    assert "two factor: off" in mfa_admin("user", "show", "alice", env_url=redis_url).stdout
    assert (await other.get("/")).status_code == 200, "after the reset the password alone is enough"
    assert mfa_admin("user", "reset-2fa", "nobody", env_url=redis_url).returncode == 1
