"""Secrets at rest: after a full scenario, nothing in Redis gives a secret away.

The scenario goes through the real adapters and a real redis-server: accounts, 2FA enrolled (TOTP seed and
backup codes), a backup code used, codes regenerated, a security question set, DDNS groups created and
rotated, updates with account and group passwords. Then every key is dumped (SCAN + type-aware reads of
strings, hashes, lists, sets, sorted sets, streams) and searched, keys and values, for every secret in
plain text, lower/upper case, base32, base64 (standard and URL-safe, with and without padding) and hex.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator

import redis
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ddns_update.protocol import Answer
from mfa_middleware.twofactor import normalize_answer
from tests import ddns_harness
from tests.gate_harness import PASSWORD, Site, backup_codes_of, csrf_of
from tests.soft_authenticator import SoftAuthenticator

ANSWER = "Fluffy McWhiskers of 1987"
QUESTION = "Name of your first cat?"
DDNS_PASSWORD = "carol-update-pass-93kd7"


def encodings(secret: str) -> set[str]:
    """``secret`` as it could be written down: text, case variants, base32/base64 (std, urlsafe, +-padding), hex."""
    forms = {secret, secret.lower(), secret.upper()}
    raws = {f.encode() for f in forms}
    for raw in raws:
        for enc in (base64.b64encode, base64.urlsafe_b64encode, base64.b32encode, base64.b16encode):
            text = enc(raw).decode()
            forms |= {text, text.rstrip("=")}
        forms.add(raw.hex())
    return {f for f in forms if len(f) >= 8}


def seed_forms(seed: str) -> set[str]:
    """A base32 TOTP seed: the text forms above plus the encodings of the key bytes it stands for."""
    forms = encodings(seed)
    key = base64.b32decode(seed.upper() + "=" * (-len(seed) % 8))
    for enc in (base64.b64encode, base64.urlsafe_b64encode, base64.b32encode):
        text = enc(key).decode()
        forms |= {text, text.rstrip("=")}
    forms |= {key.hex(), key.hex().upper(), key.decode("latin-1")}
    return forms


def code_forms(code: str) -> set[str]:
    """A backup code with and without its dashes, in every encoding."""
    return encodings(code) | encodings(code.replace("-", ""))


def dump(client: redis.Redis) -> Iterator[tuple[bytes, bytes]]:
    """(key, one stored value) for every key and every value stored under it, whatever the type."""
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        yield key, key
        if kind == b"string":
            yield key, client.get(key) or b""
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                yield key, field
                yield key, value
        elif kind == b"list":
            for value in client.lrange(key, 0, -1):
                yield key, value
        elif kind == b"set":
            for value in client.smembers(key):
                yield key, value
        elif kind == b"zset":
            for member, _score in client.zrange(key, 0, -1, withscores=True):
                yield key, member
        elif kind == b"stream":
            for _id, fields in client.xrange(key):
                for field, value in fields.items():
                    yield key, field
                    yield key, value
        else:
            raise AssertionError(f"unexpected type {kind!r} of {key!r}")


def leaks(entries: list[tuple[bytes, bytes]], secrets: dict[str, set[str]]) -> list[str]:
    """Where any form of any secret appears (case-insensitively) in a key or a value."""
    found = []
    for key, value in entries:
        hay = value.decode("latin-1").lower()
        for name, forms in secrets.items():
            for form in forms:
                if form.lower() in hay:
                    found.append(f"{name} as {form!r} in {key!r}: {value[:120]!r}")
    return found


def test_detector_finds_planted_secrets() -> None:
    """The search itself works: each encoding of a secret planted in a value is found."""
    secrets = {"seed": seed_forms("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
               "code": code_forms("abcd-efgh-jkmn-pqrs-tvwx-yz01")}
    for planted in ("xx" + base64.urlsafe_b64encode(b"ABCDEFGHJKMNPQRSTVWXYZ01").decode().rstrip("=") + "yy",
                    binascii.hexlify(base64.b32decode("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")).decode().upper(),
                    "abcdefghjkmnpqrstvwxyz01", "jbswy3dpehpk3pxpjbswy3dpehpk3pxp"):
        assert leaks([(b"k", planted.encode())], secrets), planted
    assert not leaks([(b"k", b"nothing to see")], secrets)


async def test_no_secret_in_redis_after_full_scenario(redis_url: str) -> None:
    secrets: dict[str, set[str]] = {"account password": encodings(PASSWORD), "ddns password": encodings(DDNS_PASSWORD),
                                    "security answer": encodings(ANSWER) | encodings(normalize_answer(ANSWER))}

    # -- the gate: two accounts with 2FA, a used backup code, regenerated codes, a security question --------
    site = Site("asgi", redis_url)
    for user in ("alice", "bob"):
        browser, codes = await site.new_user(user)
        for i, code in enumerate(codes):
            secrets[f"{user} backup code {i}"] = code_forms(code)
        other = site.browser()
        await other.login(user)
        r = await other.get("/mfa/verify/backup")
        r = await other.post("/mfa/verify/backup", {"csrf_token": csrf_of(r.text), "backup_code": codes[0]})
        assert r.status_code == 303 or (r.status_code == 200 and "accepted" in r.text.lower()), r.text
        r = await browser.get("/mfa/security")
        r = await browser.post("/mfa/regenerate", {"csrf_token": csrf_of(r.text), "password": PASSWORD})
        r = await browser.get("/mfa/backup-codes")
        fresh = backup_codes_of(r.text)
        assert len(fresh) == 10 and not set(fresh) & set(codes)
        for i, code in enumerate(fresh):
            secrets[f"{user} regenerated code {i}"] = code_forms(code)
        r = await browser.get("/mfa/security-question")
        r = await browser.post("/mfa/security-question", {"csrf_token": csrf_of(r.text), "question": QUESTION,
                                                          "answer": ANSWER, "password": PASSWORD})
        assert r.status_code == 200 and "saved" in r.text, r.text
        site.clock.advance(60)
        third = site.browser()
        await third.login(user)
        r = await third.get("/mfa/verify?next=/")  # a TOTP sign-in that also trusts the browser
        r = await third.post("/mfa/verify?next=/", {"csrf_token": csrf_of(r.text), "code": site.code(user),
                                                    "remember": "1"})
        assert r.status_code == 303, r.text
    for user, seed in site.seeds.items():
        secrets[f"{user} TOTP seed"] = seed_forms(seed)
    assert site.store.run(site.app_gate().twofactor.check_answer("alice", ANSWER.upper()))  # type: ignore[attr-defined]

    # -- passkeys: one added (2FA on), used, and a challenge left pending; none of its secrets may be stored:
    # the gate session ids the challenges are bound to, the challenges, the authenticator's private key ------
    gate = site.app_gate()  # type: ignore[attr-defined]
    session_ids: dict[str, set[str]] = {}
    auth = SoftAuthenticator()
    raw_key = auth.key.private_numbers().private_value.to_bytes(32, "big")
    secrets["passkey private key"] = encodings(raw_key.hex()) | {raw_key.decode("latin-1")} | encodings(
        auth.key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()).hex())
    site.add_account("dave")
    for step in range(3):
        dave = site.browser("http://localhost")
        await dave.login("dave")
        page = "/mfa/passkeys" if step == 0 else "/mfa/verify"
        token = csrf_of((await dave.get(page)).text)
        ticket = gate.sessions.loads(dave.cookie("mfa_session"))
        # (The session records themselves are keyed by their id, by design: only the passkey keys are held to this.)
        session_ids[f"dave session {step}"] = encodings(ticket.sid) | encodings(dave.cookie("mfa_session") or "")
        kind = "register" if step == 0 else "authenticate"
        r = await dave.post(f"/mfa/passkeys/{kind}/options", {"csrf_token": token, "name": "laptop"})
        options = r.json()["publicKey"]
        secrets[f"dave challenge {step}"] = encodings(options["challenge"])
        if step < 2:  # the last one stays pending
            answer = auth.create(options) if step == 0 else auth.get(options)
            r = await dave.post(f"/mfa/passkeys/{kind}", {"csrf_token": token, "credential": answer})
            assert r.status_code == 200, r.text

    # -- the update endpoint: an account with hosts, groups created and rotated, updates ----------------------
    ddns = ddns_harness.Site(redis_url, "asgi")
    try:
        ddns.account("carol", DDNS_PASSWORD, ["a.example.test", "b.example.test", "c.example.test"])
        _, pw1 = ddns.group("carol", "home", ["a.example.test", "b.example.test"])
        _, pw2 = ddns.group("carol", "office", ["c.example.test"], login="carol-office")
        login, pw3 = ddns.sync.run(ddns.groups.rotate("carol", "office"))
        _, pw4 = ddns.sync.run(ddns.groups.rotate("carol", "home"))
        for i, pw in enumerate((pw1, pw2, pw3, pw4)):
            secrets[f"group password {i}"] = encodings(pw)
        assert (await ddns.text("hostname=a.example.test&myip=192.0.2.1", auth=("carol", DDNS_PASSWORD))).startswith(
            Answer.GOOD.value)
        assert (await ddns.text("hostname=c.example.test&myip=192.0.2.2", auth=(login, pw3))).startswith(
            Answer.GOOD.value)
        assert (await ddns.text("hostname=c.example.test&myip=192.0.2.3", auth=(login, pw2))).startswith(
            Answer.BADAUTH.value)  # the rotated-away password
        home = ddns.sync.run(ddns.groups.list("carol"))
        home_login = next(g.login for g in home if g.name == "home")
        assert (await ddns.text("myip=192.0.2.4", auth=(home_login, pw4))).startswith(Answer.GOOD.value)
        # wrong passwords too: a failure must not be logged with what was typed
        await ddns.text("hostname=a.example.test", auth=("carol", DDNS_PASSWORD + "x"))
        secrets["typed wrong password"] = encodings(DDNS_PASSWORD + "x")
    finally:
        await ddns.close()

    # -- the dump --------------------------------------------------------------------------------------------
    client = redis.Redis.from_url(redis_url)
    try:
        entries = list(dump(client))
        kinds = {client.type(k) for k in client.scan_iter(count=1000)}
    finally:
        client.close()
    keys = {k for k, _ in entries}
    print(f"\nsecrets at rest: {len(keys)} keys, {len(entries)} keys/fields/values searched for "
          f"{sum(len(f) for f in secrets.values())} encodings of {len(secrets)} secrets")
    assert len(keys) >= 20 and {b"hash", b"string"} <= kinds, (len(keys), kinds)
    for part in (b":wa:cred", b":wa:count", b":wa:used", b":wa:ch:", b"wa:{c:"):  # the passkey keys were searched
        assert any(part in k for k in keys), part
    found = leaks(entries, secrets) + leaks([e for e in entries if b"wa:" in e[0]], session_ids)
    assert not found, "\n".join(found[:20])
