"""``Gate.quick``'s fast lane (a verified session with nothing due, answered from what its Cookie header says,
worked out once per header) decides exactly as the general rules (``Gate._decide``) do, for any ticket,
clock, policy, epoch and 2FA state; and a header remembered once is judged against the clock every time."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mfa_middleware.gate import _MEMO_ENTRIES_MAX, _MEMO_HEADER_MAX, Gate, Pass, cookie_value
from mfa_middleware.identity import starlette_session
from mfa_middleware.passwords import FAST
from mfa_middleware.sessions import SESSION_COOKIE, GateSession, cookie_name
from mfa_middleware.store import Keys
from tests.gate_harness import Site

SECRET = "s" * 32
ENC = "e" * 32
START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _gate(policy: str, clock: Clock) -> Gate:
    return Gate(keys=Keys(), secret_key=SECRET, encryption_keys=ENC, argon2_profile=FAST, policy=policy,
                clock=clock)


def _decision(result: Pass | None) -> tuple[dict[str, Any], list[str]] | None:
    return None if result is None else (result.mfa, result.cookies)


def _header(gate: Gate, session: GateSession, seen: float, https: bool, tamper: bool) -> str:
    value = gate.sessions.dumps(session, seen=seen)
    if tamper:
        value = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    return f"app_session=abc; {cookie_name(SESSION_COOKIE, https)}={value}; theme=dark"


@settings(max_examples=300, deadline=None)
@given(
    policy=st.sampled_from(["optional", "required"]),
    enabled=st.booleans(),
    same_account=st.booleans(),
    epoch_delta=st.sampled_from([0, 0, 0, 1]),
    created_ago=st.sampled_from([0.0, 10.0, 3600.0, 12 * 3600.0 - 1, 12 * 3600.0, 13 * 3600.0]),
    seen_ago=st.sampled_from([0.0, 5.0, 59.0, 60.0, 61.0, 30 * 60.0 - 1, 30 * 60.0, 40 * 60.0]),
    verified=st.booleans(),
    method=st.sampled_from(["totp", "backup"]),
    tamper=st.booleans(),
    https=st.booleans(),
    later=st.sampled_from([0.0, 0.4, 30.0, 61.0]),
    as_bytes=st.booleans(),
)
def test_fast_lane_agrees_with_the_general_rules(policy: str, enabled: bool, same_account: bool, epoch_delta: int,
                                                 created_ago: float, seen_ago: float, verified: bool, method: str,
                                                 tamper: bool, https: bool, later: float, as_bytes: bool) -> None:
    clock = Clock()
    gate = _gate(policy, clock)
    identity = "alice"
    created = min(START - created_ago, START - seen_ago)
    session = GateSession("s" * 43, identity if same_account else "mallory", 7, created, "csrf",
                          START - seen_ago if verified else None, method if verified else "")
    header = _header(gate, session, START - seen_ago, https, tamper)
    for step in (0.0, later):  # the second look at the same header comes from the memo
        clock.now += step
        gate.epochs.put(identity, 7 + epoch_delta, enabled)
        raw = cookie_value(header, cookie_name(SESSION_COOKIE, https))
        ticket = gate.sessions.signed(raw)
        known = gate.epochs.get(identity)
        assert known is not None
        expected = gate._decide(identity, known, ticket, https)
        sent = header.encode("latin-1") if as_bytes else header  # ASGI's bytes, WSGI's text
        assert _decision(gate.quick("/", identity, sent, https)) == _decision(expected)


def _verified_alice(clock: Clock) -> tuple[Gate, str]:
    """A gate and the Cookie header of alice's session verified just now (epoch 1, 2FA on)."""
    gate = _gate("optional", clock)
    session = GateSession("s" * 43, "alice", 1, START, "csrf", START, "totp")
    gate.epochs.put("alice", 1, True)
    return gate, _header(gate, session, START, False, False)


def test_a_remembered_header_still_times_out_and_is_reissued() -> None:
    clock = Clock()
    gate, header = _verified_alice(clock)
    first = gate.quick("/", "alice", header, False)
    assert first is not None and first.mfa["verified"] and first.cookies == []
    first.mfa["verified"] = False  # an app scribbling on scope["mfa"] must not change the next answer
    again = gate.quick("/", "alice", header, False)
    assert again is not None and again.mfa["verified"] is True
    clock.now += gate.sessions.refresh_after  # the ticket's last-seen time is due to move: a new cookie
    gate.epochs.put("alice", 1, True)
    refreshed = gate.quick("/", "alice", header, False)
    assert refreshed is not None and len(refreshed.cookies) == 1
    clock.now += gate.sessions.idle_timeout  # idle too long: not decided locally any more
    gate.epochs.put("alice", 1, True)
    assert gate.quick("/", "alice", header, False) is None
    gate.epochs.put("alice", 2, True)  # and a revoked epoch is never passed, however fresh the ticket
    clock.now = START
    assert gate.quick("/", "alice", header, False) is None


class EpochClock(Clock):
    def __init__(self) -> None:
        self.now = 5_000.0  # a monotonic clock's own origin


EVENTS = ("nothing", "refresh", "revoke", "disable", "forget", "evict", "epoch_age", "wall", "other_user",
          "other_scheme")
AMOUNTS = (0.0, 0.3, 0.79, 0.8, 0.81, 1.0, 1.5, 61.0)
PATHS = ("/", "/app/page", "/mfa", "/mfa/setup", "/nic/update", "/nic/update/x", "/nic/updates")


def _passing_agrees_with_quick(policy: str, enabled: bool, session: GateSession, seen_ago: float, tamper: bool,
                               https: bool, as_bytes: bool, event: str, amount: float, path: str) -> None:
    """``Gate.passing`` (the lane a verified session's every request takes) answers a request only with what
    ``quick`` answers at that moment (the same facts, no cookie to set), after whatever happened since ``quick``
    last let the header through: a refresh or revocation learned, ``forget``, eviction, either clock moving,
    another user behind the same cookie, the same header over the other scheme, a path the gate treats
    specially. And it is not dead code: with
    nothing changed, it answers every request of a 2FA account that ``quick`` let through without a cookie."""
    clock, epoch_clock = Clock(), EpochClock()
    gate = _gate(policy, clock)
    gate.epochs.clock = epoch_clock
    text = _header(gate, session, START - seen_ago, https, tamper)
    header: str | bytes = text.encode("latin-1") if as_bytes else text
    gate.epochs.put("alice", 7, enabled)
    first = gate.quick("/", "alice", header, https)
    identity = "alice"
    if event == "refresh":
        gate.epochs.put("alice", 7, enabled)
    elif event == "revoke":
        gate.epochs.put("alice", 8, enabled)
    elif event == "disable":
        gate.epochs.put("alice", 7, False)
    elif event == "forget":
        gate.epochs.forget("alice")
    elif event == "evict":
        gate.epochs.max_entries = 1
        epoch_clock.now += gate.epochs.ttl + amount  # alice's entry is stale when bob's arrives
        gate.epochs.put("bob", 1, True)
    elif event == "epoch_age":
        epoch_clock.now += amount
    elif event == "wall":
        clock.now += amount
    elif event == "other_user":
        identity = "mallory"
    elif event == "other_scheme":  # its gate cookie has the other scheme's name: not a gate cookie there
        https = not https
    facts = gate.passing(path, identity, header, https)
    answer = gate.quick(path, identity, header, https)
    if event == "nothing" and path in ("/", "/app/page") and enabled and first is not None \
            and first.cookies == [] and first.mfa.get("verified"):
        assert facts == first.mfa  # the lane is taken (for 2FA on: a verified session of an account without
        # 2FA, whose 2FA was just turned off, is left to ``quick``)
    if facts is not None:
        assert answer is not None and answer.cookies == [] and answer.mfa == facts, (event, amount, path)
        facts["verified"] = False  # the app may scribble on scope["mfa"]: the next answer is untouched
        again = gate.passing(path, identity, header, https)
        assert again is not None and again["verified"] is True


@settings(max_examples=300, deadline=None)
@given(
    policy=st.sampled_from(["optional", "required"]),
    enabled=st.booleans(),
    same_account=st.booleans(),
    created_ago=st.sampled_from([0.0, 3600.0, 12 * 3600.0 - 1, 13 * 3600.0]),
    seen_ago=st.sampled_from([0.0, 5.0, 59.0, 60.0, 30 * 60.0 - 1, 40 * 60.0]),
    verified=st.booleans(),
    tamper=st.booleans(),
    https=st.booleans(),
    as_bytes=st.booleans(),
    event=st.sampled_from(EVENTS),
    amount=st.sampled_from(AMOUNTS),
    path=st.sampled_from(PATHS),
)
def test_passing_answers_only_what_quick_would(policy: str, enabled: bool, same_account: bool, created_ago: float,
                                               seen_ago: float, verified: bool, tamper: bool, https: bool,
                                               as_bytes: bool, event: str, amount: float, path: str) -> None:
    session = GateSession("s" * 43, "alice" if same_account else "mallory", 7, START - max(created_ago, seen_ago),
                          "csrf", START - seen_ago if verified else None, "totp" if verified else "")
    _passing_agrees_with_quick(policy, enabled, session, seen_ago, tamper, https, as_bytes, event, amount, path)


def test_passing_on_a_verified_session_after_every_event() -> None:
    """The region that matters, every combination: a verified, fresh session that ``quick`` has let through,
    then each event at each size on each path (random sessions above rarely land here)."""
    session = GateSession("s" * 43, "alice", 7, START - 10, "csrf", START - 10, "totp")
    for policy, enabled in (("optional", True), ("required", True), ("optional", False)):
        for event in EVENTS:
            for amount in AMOUNTS:
                for path in PATHS:
                    for https, as_bytes in ((False, False), (True, True)):
                        _passing_agrees_with_quick(policy, enabled, session, 5.0, False, https, as_bytes, event,
                                                   amount, path)


def test_passing_follows_a_revocation_learned_from_the_store_at_once() -> None:
    """Not one request more passes on a confirmed header once the cache holds a newer epoch (``put``) or none."""
    gate, header = _verified_alice(Clock())
    assert gate.passing("/", "alice", header, False) is None  # nothing confirmed yet
    assert gate.quick("/", "alice", header, False) is not None
    assert gate.passing("/", "alice", header, False) is not None
    gate.epochs.put("alice", 2, True)  # "sign out everywhere", as the store told this instance
    assert gate.passing("/", "alice", header, False) is None
    assert gate.quick("/", "alice", header, False) is None
    gate.epochs.put("alice", 1, True)
    assert gate.quick("/", "alice", header, False) is not None
    gate.epochs.forget("alice")  # this instance changed the account itself
    assert gate.passing("/", "alice", header, False) is None


def test_passing_sees_a_revocation_after_an_eviction_that_kept_the_entry() -> None:
    """Eviction keeps fresh entries; the gate must read the cache's current dict afterwards (eviction replaces
    it), so a revocation learned after it still stops ``passing`` at once."""
    gate, header = _verified_alice(Clock())
    epoch_clock = EpochClock()
    gate.epochs.clock = epoch_clock
    gate.epochs.max_entries = 2
    gate.epochs.put("old", 1, True)
    epoch_clock.now += gate.epochs.ttl + 0.1  # "old" is stale now
    gate.epochs.put("alice", 1, True)
    assert gate.quick("/", "alice", header, False) is not None
    gate.epochs.put("bob", 1, True)  # full: evicts "old", keeps alice's entry as it was
    assert "old" not in gate.epochs.entries and "alice" in gate.epochs.entries
    assert gate.passing("/", "alice", header, False) is not None
    gate.epochs.put("alice", 2, True)  # then a revocation
    assert gate.passing("/", "alice", header, False) is None
    assert gate.quick("/", "alice", header, False) is None
    gate.epochs.forget("alice")
    gate.epochs.put("alice", 1, True)  # forgotten, then learned again: confirmed afresh by quick first
    assert gate.passing("/", "alice", header, False) is None
    assert gate.quick("/", "alice", header, False) is not None
    assert gate.passing("/", "alice", header, False) is not None


def test_the_memo_of_confirmed_headers_is_bounded() -> None:
    """``passing``'s memo holds at most ``_MEMO_ENTRIES_MAX`` headers (a full one is emptied, and the next
    ``quick`` confirms afresh) and never a header longer than ``_MEMO_HEADER_MAX``, which still passes."""
    gate, header = _verified_alice(Clock())
    gate.epochs.clock = EpochClock()  # held still: the loop may take longer than the cache's refresh age
    gate.epochs.put("alice", 1, True)
    for n in range(_MEMO_ENTRIES_MAX + 5):
        padded = f"{header}; n={n}"
        assert gate.quick("/", "alice", padded, False) is not None
        assert len(gate._passes) <= _MEMO_ENTRIES_MAX
    assert gate.passing("/", "alice", padded, False) is not None
    long = f"{header}; junk={'x' * _MEMO_HEADER_MAX}"
    assert gate.quick("/", "alice", long, False) is not None
    assert long not in gate._passes and gate.passing("/", "alice", long, False) is None


def test_starlette_session_reads_the_login_or_none() -> None:
    hook = starlette_session("user")
    assert hook({"session": {"user": "alice"}}) == "alice"
    assert hook({"session": {"user": 42}}) == "42"  # an integer primary key
    for scope in ({}, {"session": None}, {"session": {}}, {"session": {"user": ""}}, {"session": {"user": None}},
                  {"session": {"user": 0}}, {"session": ["user"]}):
        assert hook(scope) is None, scope


async def test_a_server_handing_bytearray_headers_gets_the_same_answers(redis_url: str) -> None:
    """ASGI allows any byte string for header values; a bytearray is unhashable, so the adapter copies it
    before the gate's per-header memos see it. A verified session's requests pass (the first confirmed by
    ``quick``, the rest by ``passing``), with the same facts as over httpx's bytes."""
    site = Site("asgi", redis_url)
    b, _ = await site.new_user("alice")
    expected = (await b.get("/")).json()["mfa"]
    cookie = "; ".join(f"{c.name}={c.value}" for c in b.client.cookies.jar).encode()
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    for _ in range(3):
        sent.clear()

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
                 "headers": [(bytearray(b"host"), bytearray(b"testserver")),
                             (bytearray(b"cookie"), bytearray(cookie))],
                 "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
        await site.app(scope, receive, send)
        assert sent[0]["status"] == 200
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")  # type: ignore[misc]
        assert json.loads(body)["mfa"] == expected
