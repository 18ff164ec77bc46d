"""The gate has one decision (``Gate.handle``, against the store); its fast lanes (``passing``, ``quick``) only
repeat what ``handle`` answered a Cookie header less than ``revocation_ttl`` ago, and every event that ends a
session reaches them: at once on the instance that saw it, within ``revocation_ttl`` on any other.

The property test drives random sequences of events through two instances sharing one store and requires
that whenever a fast lane answers, ``handle`` answers the same at that moment (unless another instance changed
things less than ``revocation_ttl`` ago, which is the documented bound)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfa_middleware.confirmations import MAX_ENTRIES, MAX_KEY
from mfa_middleware.gate import Gate, Pass, Request, parse_cookies
from mfa_middleware.passwords import FAST
from mfa_middleware.sessions import SESSION_COOKIE
from mfa_middleware.store import MemoryStore, Store, open_store
from mfa_middleware.totp import TotpParams, code_at, current_step

SECRET = "s" * 32
ENC = "e" * 32
TTL = 1.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """Two instances of one site (two gates, one store), the wall clock and each instance's monotonic clock."""

    store: Store
    wall: Clock
    mono: Clock
    gates: list[Gate]
    header: str = ""
    identity: str | None = "alice"
    # Per instance: the monotonic time of the last change it did not make itself (it learns those within TTL).
    foreign_change: list[float] = field(default_factory=lambda: [-1e9, -1e9])

    def request(self, i: int, identity: str | None, path: str = "/") -> Request:
        return Request(method="GET", path=path, query={}, headers={"cookie": self.header},
                       cookies=parse_cookies(self.header), client_ip="192.0.2.1", https=False,
                       identity=identity, memo_key=self.header)

    def handle(self, i: int, identity: str | None = "alice", path: str = "/") -> Any:
        decision = self.store.run(self.gates[i].handle(self.request(i, identity, path)))
        for cookie in (decision.cookies if isinstance(decision, Pass) else
                       [v for k, v in decision.headers if k == "set-cookie"]):
            name, _, rest = cookie.partition("=")
            if name == SESSION_COOKIE:
                self._set_session(rest.partition(";")[0])
        return decision

    def _set_session(self, value: str) -> None:
        self.header = f"app=1; {SESSION_COOKIE}={value}" if value else "app=1"

    def changed_by(self, i: int | None) -> None:
        for j in range(2):
            if j != i:
                self.foreign_change[j] = self.mono.now


def _world() -> World:
    memory = MemoryStore()
    store = open_store(None, memory=memory)
    wall, mono = Clock(1_700_000_000.0), Clock(5_000.0)
    gates = []
    for _ in range(2):
        gate = Gate(keys=store.keys, secret_key=SECRET, encryption_keys=ENC, argon2_profile=FAST, clock=wall,
                    revocation_ttl=TTL, step_up={"/billing/": 60})
        gate.confirmed.monotonic = mono
        gates.append(gate)
    world = World(store, wall, mono, gates)
    g = gates[0]
    seed = store.run(g.twofactor.begin_enrollment("alice"))
    params = TotpParams()
    assert store.run(g.twofactor.confirm_enrollment("alice", code_at(seed, current_step(wall(), params), params)))
    world.seed = seed  # type: ignore[attr-defined]
    _sign_in(world)
    return world


def _sign_in(world: World, verified: bool = True) -> None:
    """A fresh gate session for alice: her browser after logging in and (``verified``) passing the prompt."""
    g = world.gates[0]
    st_ = world.store.run(g.twofactor.status("alice"))
    session = world.store.run(g.sessions.create("alice", st_.epoch))
    if verified:
        session = world.store.run(g.sessions.rotate(session, verified_at=float(int(world.wall())), method="totp"))
    world._set_session(g.sessions.dumps(session))
    world.identity = "alice"


EVENTS = ["request0", "request1", "logout0", "logout1", "other_user0", "other_user1", "disable0",
          "regenerate1", "signout0", "operator_reset", "sign_in", "tick", "ttl", "refresh", "idle", "absolute",
          "request0", "request1", "password_only", "special0", "special1"]
# Paths with a rule of their own: what handle answers there must never be replayed for an ordinary page.
SPECIAL = ["/logout", "/nic/update", "/billing/pay", "/mfa/security", "/mfa/verify"]


def _fast(world: World, i: int) -> Pass | None:
    if world.identity is None:
        return None
    return world.gates[i].quick("/", world.identity, world.header, False)


def _step(world: World, event: str) -> None:
    if event.startswith("request"):
        i = int(event[-1])
        fast = _fast(world, i)
        passing = world.gates[i].passing("/", world.identity, world.header, False) if world.identity else None
        if (fast is not None or passing is not None) and world.mono.now - world.foreign_change[i] >= TTL:
            slow = world.handle(i, world.identity)
            assert isinstance(slow, Pass), f"fast lane let through what handle refuses: {slow}"
            for answer in (fast.mfa if fast else None, passing):
                if answer is not None:
                    assert answer == slow.mfa
        else:
            world.handle(i, world.identity)
    elif event.startswith("logout"):  # the app's login ends; this browser's next request tells the gate
        i = int(event[-1])
        world.handle(i, None)
        world.changed_by(i)
        world.identity = "alice"  # ...and someone with the password signs in again with the copied cookie
    elif event.startswith("other_user"):
        i = int(event[-1])
        world.handle(i, "mallory")
        world.changed_by(i)
    elif event == "disable0":
        world.store.run(world.gates[0].twofactor.disable("alice"))
        world.gates[0].confirmed.forget("alice")
        world.changed_by(0)
    elif event == "regenerate1":
        world.store.run(world.gates[1].twofactor.regenerate("alice"))
        world.gates[1].confirmed.forget("alice")
        world.changed_by(1)
    elif event == "signout0":
        world.store.run(world.gates[0].twofactor.sign_out_everywhere("alice"))
        world.gates[0].confirmed.forget("alice")
        world.changed_by(0)
    elif event == "operator_reset":  # mfa-admin: no instance hears of it but through the store
        world.store.run(world.gates[0].twofactor.reset("alice"))
        world.changed_by(None)
    elif event == "sign_in":
        _sign_in(world)
    elif event == "password_only":  # signed in, second factor not given yet
        _sign_in(world, verified=False)
    elif event.startswith("special"):
        i = int(event[-1])
        for path in reversed(SPECIAL):  # the gate's own pages first: they forget the account on their way out
            world.handle(i, world.identity, path)
    elif event == "tick":
        world.mono.now += 0.3
        world.wall.now += 0.3
    elif event == "ttl":
        world.mono.now += TTL
        world.wall.now += TTL
    elif event == "refresh":
        world.wall.now += world.gates[0].sessions.refresh_after
    elif event == "idle":
        world.wall.now += world.gates[0].sessions.idle_timeout
    elif event == "absolute":
        world.wall.now += world.gates[0].sessions.absolute_timeout


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(st.sampled_from(EVENTS), min_size=1, max_size=14))
def test_every_lane_answers_as_handle_does(events: list[str]) -> None:
    world = _world()
    for event in events:
        _step(world, event)
    # Whatever happened, once TTL has passed everywhere, no lane of either instance disagrees with handle.
    world.mono.now += TTL
    world.foreign_change = [-1e9, -1e9]
    for i in (0, 1, 0, 1):
        _step(world, f"request{i}")


def _warm(world: World) -> None:
    for i in (0, 1, 0, 1):
        assert isinstance(world.handle(i), Pass)
        assert _fast(world, i) is not None, "handle's answer is remembered for the next request"


ENDINGS = ["logout", "other_user", "disable", "regenerate", "signout", "operator_reset", "idle", "absolute"]


def _end(world: World, ending: str, at: int) -> None:
    g = world.gates[at]
    if ending == "logout":
        world.handle(at, None)
    elif ending == "other_user":
        world.handle(at, "mallory")
    elif ending in ("disable", "regenerate", "signout"):
        op = {"disable": g.twofactor.disable, "regenerate": g.twofactor.regenerate,
              "signout": g.twofactor.sign_out_everywhere}[ending]
        world.store.run(op("alice"))
        g.confirmed.forget("alice")  # what the view does after any change (Gate.handle)
    elif ending == "operator_reset":
        world.store.run(g.twofactor.reset("alice"))
    elif ending == "idle":
        world.wall.now += g.sessions.idle_timeout
    elif ending == "absolute":
        world.wall.now += g.sessions.absolute_timeout


def _refused(world: World, i: int) -> bool:
    """Neither fast lane answers, and handle does not let the old session through as verified."""
    if _fast(world, i) is not None or world.gates[i].passing("/", "alice", world.header, False) is not None:
        return False
    slow = world.handle(i)
    return not (isinstance(slow, Pass) and slow.mfa.get("verified"))



@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("at", [0, 1])
def test_an_ended_session_is_refused_on_every_lane_of_both_instances(ending: str, at: int) -> None:
    world = _world()
    _warm(world)
    header = world.header
    _end(world, ending, at)
    world.header = header  # the copied cookie, sent again
    local_at_once = ending in ("logout", "other_user", "disable", "regenerate", "signout", "idle", "absolute")
    if local_at_once:  # the instance that saw the event (and any instance, for the clock's events) at once
        assert _refused(world, at)
    world.header = header
    world.mono.now += TTL  # every instance within revocation_ttl
    world.wall.now += TTL
    for i in (0, 1):
        world.header = header
        assert _refused(world, i)
        world.header = header
        assert _refused(world, i)  # and again: nothing remembered lets it back in


def test_a_ticket_is_reissued_only_after_the_store_confirms_its_record() -> None:
    world = _world()
    _warm(world)
    g = world.gates[0]
    world.wall.now += g.sessions.refresh_after  # the ticket is due for re-issue
    assert _fast(world, 0) is None and _fast(world, 1) is None
    sid = g.sessions.loads(parse_cookies(world.header)[SESSION_COOKIE])
    assert sid is not None
    world.store.run(g.sessions.delete(sid.sid))  # the record is gone (a logout another instance saw)
    header = world.header
    decision = world.handle(0)
    assert not (isinstance(decision, Pass) and decision.mfa.get("verified"))
    assert world.header != header or not isinstance(decision, Pass) or not decision.cookies


def test_the_app_scribbling_on_its_facts_changes_no_later_answer() -> None:
    world = _world()
    _warm(world)
    first = _fast(world, 0)
    assert first is not None
    first.mfa["verified"] = False
    again = _fast(world, 0)
    assert again is not None and again.mfa["verified"] is True


def test_the_same_header_for_another_identity_or_scheme_is_decided_afresh() -> None:
    world = _world()
    _warm(world)
    g = world.gates[0]
    assert g.quick("/", "mallory", world.header, False) is None
    assert g.quick("/", "alice", world.header, True) is None
    assert g.quick("/", "alice", world.header, False) is not None


def test_the_memo_is_bounded() -> None:
    world = _world()
    g = world.gates[0]
    base = world.header
    for n in range(MAX_ENTRIES + 5):
        g.confirmed.put("/", f"{base}; pad={n}", "alice", False, {"verified": True}, world.wall.now + 60)
        assert len(g.confirmed.entries) <= MAX_ENTRIES
    long = base + "; pad=" + "x" * MAX_KEY
    g.confirmed.put("/", long, "alice", False, {"verified": True}, world.wall.now + 60)
    assert long not in g.confirmed.entries


def test_only_one_request_refreshes_an_entry_at_a_time() -> None:
    world = _world()
    _warm(world)
    g = world.gates[0]
    world.mono.now += TTL * 0.85  # past the refresh age, before expiry
    answers = [g.quick("/", "alice", world.header, False) for _ in range(5)]
    assert answers[0] is None and all(a is not None for a in answers[1:])
    world.mono.now += TTL * 0.2  # expired: nobody rides it any more
    assert g.quick("/", "alice", world.header, False) is None
    assert g.quick("/", "alice", world.header, False) is None


def test_an_answer_for_a_special_path_is_not_replayed_for_other_pages() -> None:
    """Logout is let through for a user who still owes the code; that answer must not open "/" (nor may an
    exemption's, a step-up route's or a gate page's)."""
    world = _world()
    _sign_in(world, verified=False)
    for i in (0, 1):
        for path in SPECIAL:
            world.handle(i, "alice", path)
            assert _fast(world, i) is None, path
            assert world.gates[i].passing("/", "alice", world.header, False) is None, path
            slow = world.handle(i)
            assert not isinstance(slow, Pass), path
