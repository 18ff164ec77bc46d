"""The whole 2FA lifecycle through real HTTP, the same suite against the ASGI and the WSGI adapter."""

from __future__ import annotations

import pytest

from tests.gate_harness import ADAPTERS, PASSWORD, Site, backup_codes_of, csrf_of

pytestmark = pytest.mark.parametrize("kind", ADAPTERS)


async def test_full_flow_enroll_logout_login_verify_backup_regenerate_disable(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    b, codes = await site.new_user("alice")
    # Enrolment itself proves the second factor: the enrolling session goes on.
    assert (await b.get("/")).json()["mfa"]["verified"] is True
    # Backup codes are shown once.
    assert backup_codes_of((await b.get("/mfa/backup-codes")).text) == []

    await b.logout()
    await b.login("alice")
    r = await b.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/mfa/verify?next=/"
    r = await site.verify(b, "alice")
    assert r.status_code == 303 and r.headers["location"] == "/"
    mfa = (await b.get("/")).json()["mfa"]
    assert mfa["verified"] is True and mfa["method"] == "totp" and mfa["verified_at"]

    await b.logout()
    await b.login("alice")
    r = await b.form("/mfa/verify/backup", {"backup_code": codes[0].upper()})
    assert r.status_code == 200 and 'data-backup-codes-left="9"' in r.text
    assert (await b.get("/")).json()["mfa"]["method"] == "backup"

    r = await b.form("/mfa/regenerate", {"password": PASSWORD}, page="/mfa/security")
    assert r.status_code == 303
    new_codes = backup_codes_of((await b.get("/mfa/backup-codes")).text)
    assert len(new_codes) == 10 and not set(new_codes) & set(codes)

    await b.logout()
    await b.login("alice")
    r = await b.form("/mfa/verify/backup", {"backup_code": codes[1]})
    assert r.status_code == 401, "an old backup code must die with regenerate"
    r = await b.form("/mfa/verify/backup", {"backup_code": new_codes[0]})
    assert r.status_code == 200

    r = await b.form("/mfa/disable", {"password": PASSWORD}, page="/mfa/security")
    assert r.status_code == 200 and 'data-mfa-status="off"' in r.text
    await b.logout()
    await b.login("alice")
    r = await b.get("/")
    assert r.status_code == 200 and r.json()["mfa"]["enabled"] is False


async def test_user_without_2fa_passes_and_exempt_paths_bypass(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    b, _ = await site.new_user("bob", enroll=False)
    assert (await b.get("/")).status_code == 200
    c, _ = await site.new_user("carol")
    await c.logout()
    await c.login("carol")
    assert (await c.get("/")).status_code == 303
    assert (await c.get("/nic/update?hostname=x")).text == "good 192.0.2.1"


async def test_required_policy_sends_to_setup_without_loop(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url, gate={"policy": "required"})
    b, _ = await site.new_user("dave", enroll=False)
    r = await b.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/mfa/setup")
    assert (await b.get("/mfa/setup")).status_code == 200
    await site.enroll(b, "dave")
    assert (await b.get("/")).status_code == 200


async def test_wrong_password_and_wrong_code(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    b, _ = await site.new_user("erin", enroll=False)
    r = await b.get("/mfa/setup")
    from tests.gate_harness import key_of

    site.seeds["erin"] = key_of(r.text)
    r = await b.post("/mfa/setup", {"csrf_token": csrf_of(r.text), "password": "wrong password",
                                    "code": site.code("erin")})
    assert r.status_code == 401
    r = await b.form("/mfa/setup", {"password": PASSWORD, "code": site.code("erin", 5)})
    assert r.status_code == 400
    assert 'data-mfa-status="off"' in (await b.get("/mfa/security")).text
    await site.enroll(b, "erin")
    await b.logout()
    await b.login("erin")
    r = await b.form("/mfa/verify", {"code": "000000" if site.code("erin") != "000000" else "111111"})
    assert r.status_code == 401
    r = await b.form("/mfa/verify", {"code": "12345x"})
    assert r.status_code == 401
    assert (await b.get("/")).status_code == 303
    # Security pages need the second factor too, not just the password.
    r = await b.get("/mfa/security")
    assert r.status_code == 303 and r.headers["location"].startswith("/mfa/verify")


async def test_json_clients_get_401(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    b, _ = await site.new_user("frank")
    await b.logout()
    await b.login("frank")
    r = await b.get("/?x=1", headers={"Accept": "application/json"})
    assert r.status_code == 401
    assert r.json() == {"error": "mfa_required", "verify_url": "/mfa/verify?next=/%3Fx%3D1"}


async def test_audit_events_and_status(kind: str, redis_url: str) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    site = Site(kind, redis_url, gate={"audit": lambda e, d: events.append((e, d))})
    b, codes = await site.new_user("gina")
    await b.logout()
    await b.login("gina")
    await b.form("/mfa/verify/backup", {"backup_code": codes[0]})
    await b.form("/mfa/disable", {"password": PASSWORD}, page="/mfa/security")
    names = [e for e, _ in events]
    assert names == ["enabled", "backup_code_used", "disabled"]
    assert events[1][1]["remaining"] == 9


async def test_security_question_is_hashed_and_checked(kind: str, redis_url: str) -> None:
    import redis as redis_lib

    site = Site(kind, redis_url)
    b, _ = await site.new_user("hank")
    r = await b.form("/mfa/security-question", {"question": "First pet?", "answer": "  Rex  the Dog ",
                                                "password": PASSWORD})
    assert r.status_code == 200 and "First pet?" in r.text
    tf = site.app_gate().twofactor
    assert site.store.run(tf.check_answer("hank", "rex THE dog")) is True
    assert site.store.run(tf.check_answer("hank", "rex")) is False
    raw = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    # The whole answer, spaces included, cannot turn up by chance inside base64/hex strings.
    assert not any("rex the dog" in str(v).lower() for k in raw.scan_iter() if raw.type(k) == "hash"
                   for v in raw.hgetall(k).values())
    st = site.store.run(tf.status("hank"))
    assert st.as_dict()["security_question_set"] is True and st.backup_codes_left == 10


async def test_trust_this_browser_until_regenerate(kind: str, redis_url: str) -> None:
    site = Site(kind, redis_url)
    b, _ = await site.new_user("ivy")
    await b.logout()
    await b.login("ivy")
    r = await b.get("/mfa/verify")
    r = await b.post("/mfa/verify", {"csrf_token": csrf_of(r.text), "code": site.code("ivy"), "remember": "1"})
    assert r.status_code == 303
    await b.logout()
    await b.login("ivy")
    assert (await b.get("/")).json()["mfa"]["method"] == "trusted"
    await b.form("/mfa/regenerate", {"password": PASSWORD}, page="/mfa/security")
    await b.logout()
    await b.login("ivy")
    assert (await b.get("/")).status_code == 303, "regenerate must revoke trusted browsers"


async def test_codes_never_displayed_are_announced_on_the_security_page(kind: str, redis_url: str) -> None:
    """The redirect to the codes after regenerate never followed: the security page says they are waiting,
    the link shows them once, and the notice goes away."""
    site = Site(kind, redis_url)
    b, _ = await site.new_user("dora")
    page = (await b.get("/mfa/security")).text
    assert "data-codes-waiting" not in page  # enroll() displayed them
    r = await b.form("/mfa/regenerate", {"password": PASSWORD}, page="/mfa/security")
    assert r.status_code == 303 and r.headers["location"] == "/mfa/backup-codes"
    page = (await b.get("/mfa/security")).text  # the user went elsewhere instead
    assert "data-codes-waiting" in page and 'href="/mfa/backup-codes"' in page
    assert len(backup_codes_of((await b.get("/mfa/backup-codes")).text)) == 10
    assert "data-codes-waiting" not in (await b.get("/mfa/security")).text

