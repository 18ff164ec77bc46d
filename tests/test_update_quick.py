"""The update endpoint's quick lane (``UpdateService.quick``) decides nothing the general path would decide
differently.

For any request: when the quick lane takes it, its UPDATE step is the one the general path sends first
(the same keys and arguments; only the two clock readings may differ), its answer to every ``ok`` result
is the general path's, and ``resume`` continues from any other result exactly as the general path does.
Canonical router requests must take the lane (else it is dead code and the endpoint is slow again), and
through both real adapters over a real Redis a request answered in the lane never runs the general path.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import hiredis
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ddns_update.abuse import AbusePolicy
from ddns_update.app import build_service
from ddns_update.credentials import Login
from ddns_update.protocol import Requested, UpdateRequest, parse_plain_update, parse_trusted_proxies, parse_update
from ddns_update.scripts import ARG_ORDER, UPDATE
from ddns_update.service import QuickStep, UpdateFacts, UpdatePolicy, UpdateReply, UpdateService
from mfa_middleware.store import Keys
from mfa_middleware.store.effects import Batch, Eval
from tests.ddns_harness import AGENT, PASSWORD, RecordingBackend, Site
from tests.ddns_harness import settings as site_settings

CLOCK = {ARG_ORDER.index("now_ms"), ARG_ORDER.index("now_s")}  # the step's only time-dependent arguments
GROUP_LOGIN = "routers.alice"


def _service(policy: str) -> UpdateService:
    keys = Keys("q")
    chosen = {
        "default": UpdatePolicy(),
        "blocklist": UpdatePolicy(agent_blocklist=("curl/*", "badbot")),
        "proxies": UpdatePolicy(trusted_proxies=tuple(parse_trusted_proxies("127.0.0.0/8,::1/128"))),
        "limits": UpdatePolicy(abuse=AbusePolicy(nochg_per_host=3, faults=2), history_length=7, realm="R"),
    }[policy]
    service = build_service(site_settings("redis://unused"), keys, policy=chosen)
    service.credentials._claims[GROUP_LOGIN] = "group:alice:routers"  # a group login the process has seen
    return service


SERVICES = {name: _service(name) for name in ("default", "blocklist", "proxies", "limits")}


def _basic(login: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


host_value = st.sampled_from(["h1.example.com"] * 8 + ["h2.example.net"] * 4 + [
    "H1.Example.COM", "h1.example.com.", " h1.example.com", "a.b", "a.1", "routers", "\th1.example.com",
    "xn--bcher-kva.example", "xn--zz.example", "-bad-.example", "", "a..b", "x" * 64 + ".example", "   ",
    "b\u00fccher.example", "h1.example.com,h2.example.com", "h1.example%2ecom", "h1+h2.example",
])
ip_value = st.sampled_from(["203.0.113.7"] * 6 + ["2001:db8::1"] * 3 + [
    "::ffff:10.1.2.3", "0.0.0.0", "224.0.0.1", "999.1.1.1", "", " 10.0.0.1", "1.2.3.4,2001:db8::2",
    "fe80::1%eth0", "10.0.0.01", "::", "1.2.3.4 ", "2001:db8:1:2::/64", "1.2.3.4,2001:db8:1:2::/64", "1.2.3.4,",
])
field = st.one_of(
    st.tuples(st.just("hostname"), host_value),
    st.tuples(st.just("myip"), ip_value),
    st.tuples(st.sampled_from(["myipv6", "offline"]), st.sampled_from(["2001:db8::9", "YES", "no", ""])),
    # the spellings and prefixes the quick lane must leave to the general path (FRITZ!Box, dyndnsd)
    st.tuples(st.sampled_from(["myip6", "ip6lanprefix", "ipv6prefix", "myip"]),
              st.sampled_from(["2001:db8::9", "2001:db8:1:2::/64", "2001:db8:1::/56", "/64", ""])),
    st.tuples(st.sampled_from(["system", "wildcard", "mx", "backmx", "x", ""]),
              st.sampled_from(["dyndns", "NOCHG", ""])),
)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(st.binary(max_size=80))
    fields = draw(st.lists(field, max_size=4 if shape < 6 else 1))
    parts = [name if draw(st.integers(0, 19)) == 0 else f"{name}={value}" for name, value in fields]
    if shape >= 3:  # the canonical fields, among the others, in some order
        parts.insert(draw(st.integers(0, len(parts))), "hostname=" + draw(host_value))
        if draw(st.booleans()):
            parts.insert(draw(st.integers(0, len(parts))), "myip=" + draw(ip_value))
    return "&".join(parts).encode("utf-8")


good_auth = [_basic("alice")] * 6 + [_basic("Alice "), _basic("alice", "other")]
odd_auth = [
    _basic(GROUP_LOGIN), _basic("bad name!"), _basic(""), "Bearer abc", "Basic !!!", _basic("alice")[:-2],
    "basic " + base64.b64encode(b"alice:pw").decode(),
    "Basic " + base64.b64encode("\u00e9l\u00e8ve:pw".encode()).decode(),
]
headers_strategy = st.fixed_dictionaries({
    "user-agent": st.sampled_from([AGENT] * 5 + ["", "  ", "curl/8.1", "ddclient/3.11.2", "x" * 300, "a|b\x01c"]),
    "authorization": st.sampled_from(good_auth + odd_auth),
}, optional={
    "x-forwarded-for": st.sampled_from(["198.51.100.1", "198.51.100.1, 127.0.0.5", "junk"]),
    "x-real-ip": st.sampled_from(["198.51.100.2", "nope"]),
}).flatmap(lambda h: st.sampled_from([h, h, h, {k: v for k, v in h.items() if k != "user-agent"},
                                      {k: v for k, v in h.items() if k != "authorization"}]))
peers = st.sampled_from(["127.0.0.1", "192.0.2.10", "::1", "::ffff:10.9.8.7", "2001:db8::5", None, "/tmp/sock"])


def _next(op: Any, value: Any) -> tuple[str, Any]:
    """What an effect generator does next when sent ``value``: ("yield", effect) or ("return", result)."""
    try:
        return "yield", op.send(value)
    except StopIteration as stop:
        return "return", stop.value


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SERVICES)), queries(), headers_strategy, peers)
def test_the_quick_lane_agrees_with_the_general_path(policy: str, query: bytes, headers: dict[str, str],
                                                     peer: str | None) -> None:
    service = SERVICES[policy]
    service.credentials._claims[GROUP_LOGIN] = "group:alice:routers"  # a 'stale' case below may have forgotten it
    facts = UpdateFacts(query, headers.get("authorization"), headers.get("user-agent"), peer, headers)
    quick = service.quick(query, headers, peer)
    packed = service.quick(query, headers, peer, packed=True)
    event("quick lane" if quick is not None else "general path")
    if quick is None:
        assert packed is None
        return
    kind, first = _next(service.update(facts), None)
    assert kind == "yield" and isinstance(first, Eval) and first.script is UPDATE
    assert isinstance(quick.step, Eval) and quick.step.script is UPDATE and quick.step.keys == first.keys
    assert len(quick.step.args) == len(first.args)
    for i, (mine, theirs) in enumerate(zip(quick.step.args, first.args, strict=True)):
        if i not in CLOCK:
            assert mine == theirs, f"argument {ARG_ORDER[i] if i < len(ARG_ORDER) else i}: {mine!r} != {theirs!r}"
    # Packed for the lean driver: the same command, as Redis receives it.
    assert packed is not None and packed[1:] == quick[1:] and isinstance(packed.step, bytes)
    assert _unpacked(packed.step) == _comparable(first)
    host = quick.step.args[-1][2:]
    # Every 'ok' answer: what the general path replies, quick_body replies (or defers, with a DNS backend).
    for code in ("good", "nochg", "nohost", "!donator"):
        changed = ["ok", 1, code, host] + ([host, "1.1.1.1|||1", "2.2.2.2|||2"] if code == "good" else [])
        kind, reply = _next(_advanced(service, facts), changed)
        assert kind == "return"
        body = service.quick_body(quick, changed)
        if body is None:  # deferred: only a change to push to DNS
            assert code == "good" and service.backend.enabled
        else:
            assert reply == UpdateReply(reply.lines) and body == reply.body.encode()  # a plain 200
    # Every other status: resume does next what the general path does next, and after that too.
    for status in (["stale"], ["miss"], ["wrong"], ["denied"], ["abuse"], ["badagent"]):
        general = _advanced(service, facts)
        expected = _next(general, status)
        service.credentials._claims.pop(quick.login[0], None)  # the general path's 'stale' forgot it too
        resumed = service.resume(facts, quick, status)
        got = _next(resumed, None)
        assert service.quick_body(quick, status) is None
        assert got[0] == expected[0] and _comparable(got[1]) == _comparable(expected[1])
        if got[0] == "yield" and isinstance(got[1], Batch):  # the failure throttles: under their limits
            counts = [[1, 1000]] * len(got[1].steps)
            expected, got = _next(general, counts), _next(resumed, counts)
            assert got[0] == expected[0] and _comparable(got[1]) == _comparable(expected[1])
        service.credentials._claims[GROUP_LOGIN] = "group:alice:routers"


def _advanced(service: UpdateService, facts: UpdateFacts) -> Any:
    """The general path for ``facts``, past its first step (sent next: that step's result)."""
    op = service.update(facts)
    op.send(None)
    return op


def _unpacked(command: bytes) -> Any:
    """An EVALSHA command's bytes (RESP) as ``_comparable`` shows its Eval."""
    reader = hiredis.Reader(encoding="utf-8")
    reader.feed(command)
    name, sha, numkeys, *rest = reader.gets()
    assert reader.gets() is False and name == "EVALSHA" and sha == UPDATE.sha
    keys, args = tuple(rest[:int(numkeys)]), tuple(rest[int(numkeys):])
    return UPDATE, keys, tuple(a for i, a in enumerate(args) if i not in CLOCK)


def _comparable(effect: Any) -> Any:
    if isinstance(effect, Eval) and effect.script is UPDATE:
        return effect.script, effect.keys, tuple(a for i, a in enumerate(effect.args) if i not in CLOCK)
    return effect


@settings(max_examples=3000, deadline=None)
@given(queries())
def test_the_plain_parser_agrees_with_parse_update(query: bytes) -> None:
    plain = parse_plain_update(query)
    if plain is None:
        return
    event("plain")
    fqdn, address = plain
    request = parse_update(query)
    assert request.error is None and len(request.hosts) == 1
    assert request.hosts[0] == Requested(request.hosts[0].token, fqdn)
    assert request.offline is None
    assert (request.ipv4 or request.ipv6) == address
    assert request == UpdateRequest(request.hosts, None, request.ipv4, request.ipv6, None)


@pytest.mark.parametrize("query", [
    b"hostname=h1.example.com&myip=203.0.113.7",  # inadyn, most firmware
    b"system=dyndns&hostname=h1.example.com&myip=203.0.113.7",  # ddclient's dyndns2
    b"hostname=h1.example.com&myip=203.0.113.7&wildcard=NOCHG&mx=NOCHG&backmx=NOCHG",
    b"myip=2001:db8::1&hostname=H1.Example.com.",
    b"hostname=h1.example.com",  # the connecting address
])
def test_what_routers_send_takes_the_quick_lane(query: bytes) -> None:
    for name, service in SERVICES.items():
        quick = service.quick(query, {"authorization": _basic("alice"), "user-agent": AGENT}, "192.0.2.10")
        assert isinstance(quick, QuickStep), (name, query)
        assert isinstance(quick.step, Eval)
        assert quick.login == ("alice", "alice", "") and quick.step.args[-1] == "h:h1.example.com"


def test_a_group_login_takes_the_lane_once_its_claim_is_known() -> None:
    query = b"hostname=h1.example.com&myip=203.0.113.7"
    service = SERVICES["default"]
    service.credentials._claims[GROUP_LOGIN] = "group:alice:routers"
    quick = service.quick(query, {"authorization": _basic(GROUP_LOGIN), "user-agent": AGENT}, "192.0.2.1")
    assert quick is not None and quick.login == (GROUP_LOGIN, "alice", "routers") and isinstance(quick.step, Eval)
    assert quick.step.keys[3] == service.credentials.group_key(Login(GROUP_LOGIN, "alice", "routers"))
    assert quick.step.args[ARG_ORDER.index("kind")] == "g"
    service.credentials._claims[GROUP_LOGIN] = "group:alice:"  # a claim naming no valid group: as guess does
    assert service.credentials.guess(GROUP_LOGIN) is None
    assert service.quick(query, {"authorization": _basic(GROUP_LOGIN), "user-agent": AGENT}, "192.0.2.1") is None
    service.credentials._claims[GROUP_LOGIN] = "group:alice:routers"


def test_a_proxied_request_takes_the_general_path() -> None:
    query = b"hostname=h1.example.com&myip=203.0.113.7"
    proxied = {"authorization": _basic("alice"), "user-agent": AGENT, "x-forwarded-for": "198.51.100.1"}
    assert SERVICES["proxies"].quick(query, proxied, "127.0.0.1") is None
    # Without trusted proxies the header means nothing (the general path ignores it too): the lane takes it.
    assert SERVICES["default"].quick(query, proxied, "127.0.0.1") is not None


# ------------------------------------------------------------------- through the real adapters


@pytest.fixture(params=["asgi", "wsgi"])
async def site(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Site]:
    s = Site(redis_url, request.param)
    s.account(hosts=["a.example.test"])
    yield s
    await s.close()


def _spy(site: Site, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every call of the service's general path (``update``, ``resume``) from now on."""
    calls: list[str] = []
    for name in ("update", "resume"):
        real = getattr(site.service, name)

        def called(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append(_name)
            return _real(*args)
        monkeypatch.setattr(site.service, name, called)
    return calls


async def test_a_warm_update_is_answered_in_the_lane(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (await site.text("hostname=a.example.test&myip=203.0.113.7")) == "good 203.0.113.7\n"  # warms it
    calls = _spy(site, monkeypatch)
    assert (await site.text("hostname=a.example.test&myip=203.0.113.7")) == "nochg 203.0.113.7\n"
    assert (await site.text("system=dyndns&hostname=a.example.test&myip=203.0.113.8")) == "good 203.0.113.8\n"
    assert (await site.text("hostname=b.example.test&myip=203.0.113.8")) == "nohost\n"
    assert calls == []
    # A wrong password: the script says so, resume counts the failure and answers badauth.
    response = await site.get("hostname=a.example.test&myip=203.0.113.8", auth=("alice", "wrong"))
    assert response.status_code == 401 and response.text == "badauth\n" and calls == ["resume"]
    # Anything but the canonical shape: the general path, with the same answers.
    assert (await site.text("hostname=a.example.test&myip=203.0.113.9&offline=NO")) == "good 203.0.113.9\n"
    assert calls == ["resume", "update"]


async def test_a_cold_credential_resumes_to_argon2_once(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    verifies = site.hasher.calls
    assert (await site.text("hostname=a.example.test&myip=203.0.113.7")) == "good 203.0.113.7\n"
    assert site.hasher.calls == verifies + 1  # 'miss' in the lane, proven in resume, cached
    assert (await site.text("hostname=a.example.test&myip=203.0.113.7")) == "nochg 203.0.113.7\n"
    assert site.hasher.calls == verifies + 1


async def test_a_group_login_resolves_once_then_takes_the_lane(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.sync.run(site.hosts.add("alice", ["b.example.test"]))
    group, password = site.group("alice", "home", ["a.example.test"])
    auth = (group.login, password)
    # Unknown to this process: guessed as an account's own login, 'stale' in the lane, resolved in resume.
    assert (await site.text("hostname=a.example.test&myip=203.0.113.7", auth=auth)) == "good 203.0.113.7\n"
    calls = _spy(site, monkeypatch)
    assert (await site.text("hostname=a.example.test&myip=203.0.113.7", auth=auth)) == "nochg 203.0.113.7\n"
    assert (await site.text("hostname=b.example.test&myip=203.0.113.7", auth=auth)) == "nohost\n"  # not its host
    assert calls == []
    records = {r.host: r.ipv4 for r in site.sync.run(site.hosts.list("alice"))}
    assert records == {"a.example.test": "203.0.113.7", "b.example.test": None}


async def test_with_a_dns_backend_a_changed_record_is_pushed(redis_url: str) -> None:
    backend = RecordingBackend()
    s = Site(redis_url, "asgi", backend=backend)
    try:
        s.account(hosts=["a.example.test"])
        assert (await s.text("hostname=a.example.test&myip=203.0.113.7")) == "good 203.0.113.7\n"
        assert (await s.text("hostname=a.example.test&myip=203.0.113.8")) == "good 203.0.113.8\n"
        assert [[c.host for c in push] for push in backend.pushes] == [["a.example.test"], ["a.example.test"]]
        backend.failing.add("a.example.test")
        assert (await s.text("hostname=a.example.test&myip=203.0.113.9")) == "dnserr\n"
        assert (await s.text("hostname=a.example.test&myip=203.0.113.8")) == "nochg 203.0.113.8\n"  # reverted
        # The same through a group login the process knows (the lane builds its step for the group).
        group, password = s.group("alice", "home", ["a.example.test"])
        auth = (group.login, password)
        assert (await s.text("hostname=a.example.test&myip=203.0.113.8", auth=auth)) == "nochg 203.0.113.8\n"
        assert (await s.text("hostname=a.example.test&myip=203.0.113.9", auth=auth)) == "dnserr\n"
        assert (await s.text("hostname=a.example.test&myip=203.0.113.8", auth=auth)) == "nochg 203.0.113.8\n"
        backend.failing.clear()
        assert (await s.text("hostname=a.example.test&myip=203.0.113.9", auth=auth)) == "good 203.0.113.9\n"
        assert [c.ipv4 for c in backend.pushes[-1]] == ["203.0.113.9"]
    finally:
        await s.close()


def test_login_is_the_general_guess() -> None:
    credentials = SERVICES["default"].credentials
    credentials._claims[GROUP_LOGIN] = "group:alice:routers"
    for raw in ("Alice", GROUP_LOGIN, "bad name!", "nobody.seen.yet"):
        login = credentials.guess(raw)
        assert credentials.quick_guess(raw) == \
            (None if login is None else (login.name, login.account_id, login.group or ""))
    assert credentials.quick_guess("Alice") == ("alice", "alice", "")


def test_reply_shape() -> None:
    quick = SERVICES["default"].quick(b"hostname=h.example.com&myip=2001:db8::1",
                                      {"authorization": _basic("alice"), "user-agent": AGENT}, None)
    assert quick is not None and quick.addresses == "2001:db8::1"
    assert SERVICES["default"].quick_body(quick, ["ok", 1, "nochg", "h.example.com"]) == b"nochg 2001:db8::1\n"


def test_the_encoded_command_follows_the_login_and_the_policy() -> None:
    """The packed step is made from pieces kept per id length: a login that turns out to be a group's (whose
    command is encoded whole), a policy change and ids of new and known lengths must each give the command
    ``_update_step`` would give now."""
    service = _service("default")
    query = b"hostname=h1.example.com&myip=203.0.113.7"

    def agree(login: str) -> tuple[str, str, str]:
        headers = {"authorization": _basic(login), "user-agent": AGENT}
        quick, packed = service.quick(query, headers, "192.0.2.1"), service.quick(query, headers, "192.0.2.1",
                                                                                 packed=True)
        assert quick is not None and packed is not None and isinstance(packed.step, bytes)
        assert _unpacked(packed.step) == _comparable(quick.step)
        return packed.login

    del service.credentials._claims[GROUP_LOGIN]
    assert agree(GROUP_LOGIN) == (GROUP_LOGIN, GROUP_LOGIN, "")  # guessed as an account's own login
    service.credentials._claims[GROUP_LOGIN] = "group:alice:routers"  # then its claim is read
    assert agree(GROUP_LOGIN) == (GROUP_LOGIN, "alice", "routers")
    service.policy = UpdatePolicy(abuse=AbusePolicy(nochg_per_host=3, faults=2, window_ms=5000), history_length=4)
    agree(GROUP_LOGIN)
    for name in ("alice", "bob", "al", "a" * 40, "carol", "dave", "zoë", "müller"):  # new lengths, known lengths
        agree(name)
    assert sorted(service._pieces) == [2, 3, 4, 5, 7, 40]  # made anew after the policy change ("zoë": 4 bytes)


def test_a_key_prefix_the_pieces_cannot_split_on_still_gives_the_command() -> None:
    """The pieces are found by splitting on a placeholder id of NULs; a key prefix holding NULs defeats the
    split, and the command is then encoded whole, per update."""
    service = build_service(site_settings("redis://unused"), Keys("odd" + "\x00" * 8))
    headers = {"authorization": _basic("alice"), "user-agent": AGENT}
    quick = service.quick(b"hostname=h1.example.com", headers, "192.0.2.1")
    packed = service.quick(b"hostname=h1.example.com", headers, "192.0.2.1", packed=True)
    assert quick is not None and packed is not None and isinstance(packed.step, bytes)
    assert _unpacked(packed.step) == _comparable(quick.step)
    assert service._pieces == {5: ()}
