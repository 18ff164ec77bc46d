from __future__ import annotations

from typing import Any

import pytest

from mfa_middleware.accounts import AccountExists, Accounts, InvalidUsername, normalize_username
from mfa_middleware.passwords import FAST, Argon2Profile, PasswordHasher, PasswordRejected, clean_password
from mfa_middleware.store import Store, open_store


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Any:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    s = open_store(url)
    yield s
    s.close()


@pytest.fixture
def accounts(store: Store) -> Accounts:
    return Accounts(store.keys, PasswordHasher(FAST))


def test_create_and_authenticate(store: Store, accounts: Accounts) -> None:
    account = store.run(accounts.create("Alice@Example.COM", "correct horse"))
    assert account.id == "alice@example.com"
    assert account.password_hash.startswith("$argon2id$")
    assert store.run(accounts.authenticate("ALICE@example.com", "correct horse")) is not None
    assert store.run(accounts.authenticate("alice@example.com", "wrong horse")) is None
    with pytest.raises(AccountExists):
        store.run(accounts.create("alice@EXAMPLE.com", "another password"))


def test_password_is_never_stored_in_clear(store: Store, accounts: Accounts) -> None:
    store.run(accounts.create("bob", "s3cret-pass"))
    fields = store.run(_hgetall(store.keys.account("bob")))
    assert "s3cret-pass" not in repr(fields)


def _hgetall(key: str) -> Any:
    from mfa_middleware.store.effects import cmd

    return (yield cmd("HGETALL", key))


def test_unknown_user_still_pays_one_hash(store: Store, accounts: Accounts) -> None:
    before = accounts.hasher.calls
    assert store.run(accounts.authenticate("nobody", "whatever-pass")) is None
    assert accounts.hasher.calls == before + 1  # verified against the dummy hash


def test_rehash_on_login_when_parameters_change(store: Store) -> None:
    old = Accounts(store.keys, PasswordHasher(FAST))
    store.run(old.create("carol", "password-1"))
    stronger = Accounts(store.keys, PasswordHasher(Argon2Profile(time_cost=2, memory_cost=512, parallelism=1)))
    assert store.run(stronger.authenticate("carol", "password-1")) is not None
    account = store.run(stronger.get("carol"))
    assert account is not None and "m=512,t=2" in account.password_hash
    assert account.password_epoch == 1  # a rehash is not a password change
    assert store.run(stronger.authenticate("carol", "password-1")) is not None


def test_set_password_bumps_epoch(store: Store, accounts: Accounts) -> None:
    store.run(accounts.create("dave", "password-1"))
    assert store.run(accounts.set_password("dave", "password-2"))
    assert store.run(accounts.authenticate("dave", "password-1")) is None
    account = store.run(accounts.authenticate("dave", "password-2"))
    assert account is not None and account.password_epoch == 2
    assert not store.run(accounts.set_password("nobody", "password-2"))


@pytest.mark.parametrize("bad", ["", "x" * 10_000, b"\xff\xfe-not-utf8", "nul\x00inside"])
def test_bad_passwords_get_a_clean_error(bad: Any) -> None:
    with pytest.raises(PasswordRejected):
        clean_password(bad)


@pytest.mark.parametrize("bad", ["", "x" * 10_000, b"\xff\xfe-not-utf8", "nul\x00inside"])
def test_bad_passwords_never_authenticate(store: Store, accounts: Accounts, bad: Any) -> None:
    store.run(accounts.create("erin", "password-1"))
    assert store.run(accounts.authenticate("erin", bad)) is None


def test_create_refuses_weak_or_huge_passwords(store: Store, accounts: Accounts) -> None:
    for bad in ("short", "x" * 10_000, b"\xff\xfe"):
        with pytest.raises(PasswordRejected):
            store.run(accounts.create("frank", bad))
    assert store.run(accounts.get("frank")) is None  # nothing half-written


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Alice", "alice"), ("  bob@Example.org ", "bob@example.org"), ("ＡＢＣ", "abc"), ("Straße", "strasse")],
)
def test_username_normalisation(raw: str, expected: str) -> None:
    assert normalize_username(raw) == expected


@pytest.mark.parametrize("bad", ["", "   ", "a:b", "a b", "{tag}", "x" * 300, "tab\there", b"\xff"])
def test_bad_usernames(bad: Any) -> None:
    with pytest.raises(InvalidUsername):
        normalize_username(bad)


def test_bad_username_never_authenticates(store: Store, accounts: Accounts) -> None:
    assert store.run(accounts.authenticate("a:b", "password-1")) is None
