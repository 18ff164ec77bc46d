"""Passkeys (WebAuthn) through the real adapters (Starlette + ASGI gate, Flask + WSGI gate) and a real
redis-server, with a software authenticator (``soft_authenticator``): registration and authentication, and
each way an answer must be refused (origin, RP id, challenge wrong, used or expired, no user presence or
verification, a counter going back, a credential id of another account), the factor rules (2FA on with TOTP or
a passkey, backup codes once, disable removes passkeys), and one assertion sent 50 times to two instances."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import redis

from mfa_middleware.passkeys import RelyingParty
from tests.gate_harness import ADAPTERS, PASSWORD, Browser, Site, backup_codes_of, csrf_of
from tests.soft_authenticator import SoftAuthenticator

BASE = "http://localhost"
JSON = {"accept": "application/json"}


def new_site(kind: str, redis_url: str, **gate: Any) -> Site:
    events: list[tuple[str, dict[str, Any]]] = []
    gate.setdefault("audit", lambda event, data: events.append((event, data)))
    site = Site(kind, redis_url, gate=gate, base_url=BASE)
    site.events = events  # type: ignore[attr-defined]
    return site


async def csrf(b: Browser, path: str = "/mfa/passkeys") -> str:
    r = await b.get(path)
    assert r.status_code == 200, r.text
    return csrf_of(r.text)


async def start_add(b: Browser, name: str = "laptop") -> tuple[str, dict[str, Any]]:
    token = await csrf(b)
    r = await b.post("/mfa/passkeys/register/options", {"csrf_token": token, "name": name}, headers=JSON)
    assert r.status_code == 200, r.text
    return token, r.json()["publicKey"]


async def add_passkey(b: Browser, auth: SoftAuthenticator, name: str = "laptop", **lie: Any) -> httpx.Response:
    token, options = await start_add(b, name)
    return await b.post("/mfa/passkeys/register", {"csrf_token": token, "credential": auth.create(options, **lie)},
                        headers=JSON)


async def start_login(b: Browser) -> tuple[str, dict[str, Any]]:
    token = await csrf(b, "/mfa/verify")
    r = await b.post("/mfa/passkeys/authenticate/options", {"csrf_token": token}, headers=JSON)
    assert r.status_code == 200, r.text
    return token, r.json()["publicKey"]


async def use_passkey(b: Browser, auth: SoftAuthenticator, **lie: Any) -> httpx.Response:
    token, options = await start_login(b)
    return await b.post("/mfa/passkeys/authenticate", {"csrf_token": token, "credential": auth.get(options, **lie),
                                                       "next": "/"}, headers=JSON)


async def fresh_login(site: Site, user: str) -> Browser:
    b = site.browser()
    r = await b.login(user)
    assert r.status_code == 303
    return b


async def passkey_user(site: Site, user: str, auth: SoftAuthenticator) -> tuple[Browser, list[str]]:
    site.add_account(user)
    b = await fresh_login(site, user)
    r = await add_passkey(b, auth)
    assert r.status_code == 200 and r.json()["redirect"] == "/mfa/backup-codes", r.text
    codes = backup_codes_of((await b.get("/mfa/backup-codes")).text)
    return b, codes


@pytest.fixture(params=ADAPTERS)
def site(request: pytest.FixtureRequest, redis_url: str) -> Site:
    return new_site(request.param, redis_url)


async def test_add_then_pass_the_gate_with_a_passkey(site: Site) -> None:
    auth = SoftAuthenticator()
    b, codes = await passkey_user(site, "alice", auth)
    assert len(codes) == 10  # the first factor turned 2FA on: ten codes, shown once
    assert backup_codes_of((await b.get("/mfa/backup-codes")).text) == []
    page = (await b.get("/mfa/passkeys")).text
    assert "laptop" in page and 'data-passkey-count="1"' in page
    assert 'data-mfa-status="on"' in (await b.get("/mfa/security")).text
    assert (await b.get("/")).json()["mfa"]["method"] == "webauthn"  # registering passed the gate

    b2 = await fresh_login(site, "alice")
    r = await b2.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/mfa/verify")
    verify = (await b2.get("/mfa/verify")).text
    assert "Use a passkey" in verify and 'name="code"' not in verify  # passkeys only: the passkey prompt
    assert (await b2.get("/", headers=JSON)).status_code == 401
    r = await use_passkey(b2, auth)
    assert r.status_code == 200 and r.json() == {"ok": True, "redirect": "/"}, r.text
    home = (await b2.get("/")).json()
    assert home["mfa"]["verified"] and home["mfa"]["method"] == "webauthn"
    events = [e for e, _ in site.events]  # type: ignore[attr-defined]
    assert "webauthn_added" in events and "webauthn_used" in events


async def test_refused_answers(site: Site, redis_url: str) -> None:
    auth = SoftAuthenticator()
    await passkey_user(site, "alice", auth)
    b = await fresh_login(site, "alice")
    for lie in ({"origin": "http://evil.localhost"}, {"origin": "https://localhost"}, {"rp_id": "evil.test"},
                {"up": False}):
        r = await use_passkey(b, auth, **lie)
        assert r.status_code == 401 and r.json()["error"] == "refused", (lie, r.text)
        site.clock.advance(60)  # past the back-off the failures start
    # A challenge the gate never gave, one already used, one of another session, one past its 5 minutes.
    token, options = await start_login(b)
    wrong = {**options, "challenge": "A" * 43}
    r = await b.post("/mfa/passkeys/authenticate", {"csrf_token": token, "credential": auth.get(wrong)})
    assert r.status_code == 401 and r.json()["error"] == "challenge"
    site.clock.advance(60)
    token, options = await start_login(b)
    other = await fresh_login(site, "alice")
    r = await other.post("/mfa/passkeys/authenticate", {"csrf_token": await csrf(other, "/mfa/verify"),
                                                         "credential": auth.get(options)})
    assert r.status_code == 401 and r.json()["error"] == "challenge"
    site.clock.advance(60)
    token, options = await start_login(b)
    site.clock.advance(301)
    r = await b.post("/mfa/passkeys/authenticate", {"csrf_token": token, "credential": auth.get(options)})
    assert r.status_code == 401 and r.json()["error"] == "challenge"
    assert (await b.get("/")).status_code == 303  # none of these passed the gate
    site.clock.advance(60)
    # A session has one pending challenge: asking again replaces it (what a session makes the store keep is
    # bounded), so the older one is refused and the newer one works.
    token, older = await start_login(b)
    _, newer = await start_login(b)
    r = await b.post("/mfa/passkeys/authenticate", {"csrf_token": token, "credential": auth.get(older)})
    assert r.status_code == 401 and r.json()["error"] == "challenge"
    site.clock.advance(60)
    r = await b.post("/mfa/passkeys/authenticate", {"csrf_token": token, "credential": auth.get(newer)})
    assert r.status_code == 200, r.text


async def test_registration_refusals(site: Site) -> None:
    site.add_account("alice")
    b = await fresh_login(site, "alice")
    for lie, error in (({"origin": "http://evil.localhost"}, "refused"), ({"rp_id": "evil.test"}, "refused"),
                       ({"up": False}, "refused")):
        r = await add_passkey(b, SoftAuthenticator(), **lie)
        assert r.status_code == 400 and r.json()["error"] == error, (lie, r.text)
    token, options = await start_add(b)
    r = await b.post("/mfa/passkeys/register", {"csrf_token": token,
                                                "credential": SoftAuthenticator().create({**options,
                                                                                          "challenge": "A" * 43})})
    assert r.status_code == 400 and r.json()["error"] == "challenge"
    assert 'data-mfa-status="off"' in (await b.get("/mfa/security")).text


async def test_a_credential_id_belongs_to_one_account(site: Site) -> None:
    auth = SoftAuthenticator()
    await passkey_user(site, "alice", auth)
    site.add_account("bob")
    bob = await fresh_login(site, "bob")
    copy = SoftAuthenticator(credential_id=auth.credential_id)
    r = await add_passkey(bob, copy)
    assert r.status_code == 409 and r.json()["error"] == "taken"
    # Nor can another account use Alice's passkey: it is not theirs.
    await passkey_user(site, "carol", SoftAuthenticator())
    b = await fresh_login(site, "carol")
    token, options = await start_login(b)
    r = await b.post("/mfa/passkeys/authenticate", {"csrf_token": token, "credential": auth.get(options)})
    assert r.status_code == 401


async def test_replay_and_counter(site: Site) -> None:
    auth = SoftAuthenticator()
    await passkey_user(site, "alice", auth)
    b = await fresh_login(site, "alice")
    token, options = await start_login(b)
    answer = auth.get(options)
    form = {"csrf_token": token, "credential": answer, "next": "/"}
    assert (await b.post("/mfa/passkeys/authenticate", form)).status_code == 200
    b2 = await fresh_login(site, "alice")
    form["csrf_token"] = await csrf(b2, "/mfa/verify")
    r = await b2.post("/mfa/passkeys/authenticate", form)  # the captured answer, replayed by another session
    assert r.status_code == 401
    # A counter that goes back (a cloned authenticator): refused and audited.
    token, options = await start_login(b2)
    r = await b2.post("/mfa/passkeys/authenticate", {"csrf_token": token,
                                                     "credential": auth.get(options, sign_count=1)})
    assert r.status_code == 401 and "counter" in r.json()["message"]
    assert "webauthn_clone_suspected" in [e for e, _ in site.events]  # type: ignore[attr-defined]
    site.clock.advance(60)
    assert (await use_passkey(b2, auth)).status_code == 200


async def test_counter_zero_is_accepted_again_and_again(site: Site) -> None:
    auth = SoftAuthenticator(counting=False)
    await passkey_user(site, "alice", auth)
    for _ in range(3):
        b = await fresh_login(site, "alice")
        assert (await use_passkey(b, auth)).status_code == 200


async def test_user_verification_required(redis_url: str) -> None:
    site = new_site("asgi", redis_url, webauthn_user_verification="required")
    site.add_account("alice")
    b = await fresh_login(site, "alice")
    assert (await add_passkey(b, SoftAuthenticator(), uv=False)).status_code == 400
    auth = SoftAuthenticator()
    assert (await add_passkey(b, auth)).status_code == 200
    b2 = await fresh_login(site, "alice")
    token, options = await start_login(b2)
    assert options["userVerification"] == "required"
    r = await b2.post("/mfa/passkeys/authenticate", {"csrf_token": token, "credential": auth.get(options, uv=False)})
    assert r.status_code == 401
    site.clock.advance(60)
    assert (await use_passkey(b2, auth)).status_code == 200


async def test_totp_and_passkeys_on_one_account(site: Site) -> None:
    b, codes = await site.new_user("alice")  # TOTP first: its ten codes
    auth = SoftAuthenticator()
    r = await add_passkey(b, auth)
    assert r.status_code == 200 and r.json()["redirect"] == "/mfa/passkeys"  # 2FA was on: no new codes
    b2 = await fresh_login(site, "alice")
    verify = (await b2.get("/mfa/verify")).text
    assert 'name="code"' in verify and "Use a passkey" in verify and "Use Backup Code" in verify
    assert (await use_passkey(b2, auth)).status_code == 200
    b3 = await fresh_login(site, "alice")
    assert (await site.verify(b3, "alice")).status_code == 303
    b4 = await fresh_login(site, "alice")  # the codes TOTP brought still work: none were issued again
    r = await b4.get("/mfa/verify/backup")
    r = await b4.post("/mfa/verify/backup", {"csrf_token": csrf_of(r.text), "backup_code": codes[0]})
    assert r.status_code == 200
    # Removing the passkey leaves TOTP on; disabling removes every passkey and frees its id.
    token = await csrf(b, "/mfa/passkeys")
    r = await b.post("/mfa/passkeys/remove", {"csrf_token": token, "credential_id": auth.id, "password": "wrong"})
    assert r.status_code == 401
    r = await b.post("/mfa/passkeys/remove", {"csrf_token": token, "credential_id": auth.id, "password": PASSWORD})
    assert r.status_code == 200 and 'data-passkey-count="0"' in r.text
    assert 'data-mfa-status="on"' in (await b.get("/mfa/security")).text


async def test_passkey_first_then_totp_keeps_the_codes(site: Site) -> None:
    auth = SoftAuthenticator()
    b, codes = await passkey_user(site, "alice", auth)
    r = await b.get("/mfa/setup")
    assert r.status_code == 200  # a passkey-only account may add an authenticator app
    from tests.gate_harness import key_of
    site.seeds["alice"] = key_of(r.text)
    r = await b.post("/mfa/setup", {"csrf_token": csrf_of(r.text), "password": PASSWORD, "code": site.code("alice")})
    assert r.status_code == 200 and "authenticator app is set up" in r.text
    site.clock.advance(30)
    b2 = await fresh_login(site, "alice")
    r = await b2.get("/mfa/verify/backup")
    r = await b2.post("/mfa/verify/backup", {"csrf_token": csrf_of(r.text), "backup_code": codes[0]})
    assert r.status_code == 200  # the codes the passkey brought still work


async def test_rename_remove_and_disable(site: Site, redis_url: str) -> None:
    one, two = SoftAuthenticator(), SoftAuthenticator()
    b, _ = await passkey_user(site, "alice", one)
    assert (await add_passkey(b, two, name="key two")).status_code == 200
    token = await csrf(b)
    r = await b.post("/mfa/passkeys/rename", {"csrf_token": token, "credential_id": two.id, "name": "  Blue\x00 key "})
    assert r.status_code == 200 and "Blue key" in r.text
    r = await b.post("/mfa/passkeys/rename", {"csrf_token": token, "credential_id": "nope", "name": "x"})
    assert r.status_code == 404
    r = await b.post("/mfa/passkeys/remove", {"csrf_token": token, "credential_id": one.id, "password": PASSWORD})
    assert r.status_code == 200 and 'data-passkey-count="1"' in r.text
    b2 = await fresh_login(site, "alice")
    assert (await use_passkey(b2, one)).status_code == 401  # removed
    site.clock.advance(60)
    assert (await use_passkey(b2, two)).status_code == 200
    # Disabling 2FA removes the passkeys, and their ids may be registered again (by anyone).
    r = await b.post("/mfa/disable", {"csrf_token": await csrf(b, "/mfa/security"), "password": PASSWORD})
    assert r.status_code == 200 and 'data-mfa-status="off"' in r.text
    client = redis.Redis.from_url(redis_url)
    assert not [k for k in client.scan_iter("mfa:*wa*")]
    client.close()
    site.add_account("bob")
    bob = await fresh_login(site, "bob")
    assert (await add_passkey(bob, SoftAuthenticator(credential_id=two.credential_id))).status_code == 200
    # Removing the last passkey of a passkey-only account turns 2FA off, as disabling does.
    token = await csrf(bob)
    r = await bob.post("/mfa/passkeys/remove", {"csrf_token": token, "credential_id": two.id, "password": PASSWORD})
    assert r.status_code == 200 and "now off" in r.text
    assert 'data-mfa-status="off"' in (await bob.get("/mfa/security")).text


async def test_bad_input_is_a_4xx_json_answer(site: Site) -> None:
    auth = SoftAuthenticator()
    await passkey_user(site, "alice", auth)
    b = await fresh_login(site, "alice")
    token, options = await start_login(b)
    good = json.loads(auth.get(options))
    broken = [
        "", "null", "[]", "{", json.dumps({"id": "x"}), "x" * 40000,
        json.dumps({**good, "response": {**good["response"], "clientDataJSON": "!!!"}}),
        json.dumps({**good, "response": {**good["response"], "authenticatorData": "AAAA"}}),
        json.dumps({**good, "response": {**good["response"], "signature": ""}}),
        json.dumps({**good, "rawId": "AA", "id": "AA"}),
        json.dumps({**good, "type": "other"}),
    ]
    for text in broken:
        token, _ = await start_login(b)
        r = await b.post("/mfa/passkeys/authenticate", {"csrf_token": token, "credential": text})
        assert 400 <= r.status_code < 500 and r.json()["error"], (text[:80], r.status_code, r.text)
        site.clock.advance(3600)
    r = await b.post("/mfa/passkeys/authenticate", {"csrf_token": "forged", "credential": "{}"})
    assert r.status_code == 400 and r.json()["error"] == "csrf"  # JSON, whatever the Accept header
    for text in broken:
        token = await csrf(b, "/mfa/verify")
        r = await b.post("/mfa/passkeys/register", {"csrf_token": token, "credential": text}, headers=JSON)
        assert r.status_code == 401 and r.json()["error"] == "mfa_required"  # not verified yet: no adding
    token = await csrf(b, "/mfa/verify")  # plain HTTP off localhost: no passkeys
    r = await b.post("/mfa/passkeys/authenticate/options", {"csrf_token": token}, headers={"host": "example.test"})
    assert r.status_code == 400 and r.json()["error"] == "passkeys_unavailable"


async def test_one_assertion_fifty_times_on_two_instances(redis_url: str) -> None:
    one, two = new_site("asgi", redis_url), new_site("asgi", redis_url)
    two.clock = one.clock
    auth = SoftAuthenticator()
    await passkey_user(one, "alice", auth)
    b = await fresh_login(one, "alice")
    token, options = await start_login(b)
    form = {"csrf_token": token, "credential": auth.get(options), "next": "/"}
    other = two.browser()
    for cookie in b.client.cookies.jar:
        other.client.cookies.set(cookie.name, cookie.value)
    answers = await asyncio.gather(*(c.post("/mfa/passkeys/authenticate", form)
                                     for c in [b, other] * 25))
    assert sorted(r.status_code for r in answers).count(200) == 1, [r.status_code for r in answers]


def test_relying_party_settings() -> None:
    rp = RelyingParty(None, None, "preferred", "x")
    assert rp.resolve("localhost:8000", False) == ("localhost", ("http://localhost:8000",))
    assert rp.resolve("Example.COM", True) == ("example.com", ("https://example.com",))
    for host, https in (("example.com", False), ("127.0.0.1:8000", True), ("a b", True), ("", True)):
        with pytest.raises(Exception, match="Passkeys"):
            rp.resolve(host, https)
    rp = RelyingParty("example.com", ["https://login.example.com", "https://example.com:8443"], "required", "x")
    assert rp.resolve("attacker.test", True) == ("example.com", ("https://login.example.com",
                                                                 "https://example.com:8443"))
    assert RelyingParty(None, ["https://a.example.com"], "preferred", "x").rp_id == "a.example.com"
    with pytest.raises(ValueError, match="does not match"):
        RelyingParty("example.com", ["https://example.org"], "preferred", "x")
    with pytest.raises(ValueError):
        RelyingParty(None, ["http://example.com"], "preferred", "x")
    with pytest.raises(ValueError):
        RelyingParty(None, None, "always", "x")
    with pytest.raises(ValueError):
        RelyingParty("10.0.0.1", None, "preferred", "x")
