"""The No-IP / DynDNS2 `/nic/update` protocol as pure functions.

Nothing here does I/O: the service and the framework adapters hand in what they
received (query string, headers, peer address) and get plain values back, so the
same rules serve ASGI, WSGI and the tests. Every parser answers for *any* input
and never raises: a router sending garbage must get a protocol answer, not a 500.
"""

from __future__ import annotations

import binascii
import fnmatch
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import NamedTuple

from mfa_middleware.clientip import (
    IPAddress,
    IPNetwork,
    client_address,
    ip_text,
    parse_ip,
    parse_trusted_proxies,
)

__all__ = [
    "MAX_HOSTS",
    "MAX_HOSTNAME_LENGTH",
    "MAX_QUERY_FIELDS",
    "DEFAULT_REALM",
    "WWW_AUTHENTICATE",
    "Answer",
    "Requested",
    "UpdateRequest",
    "IPAddress",
    "IPNetwork",
    "normalize_hostname",
    "parse_hostnames",
    "ip_text",
    "parse_ip",
    "parse_ip_params",
    "parse_prefix",
    "combine",
    "parse_offline",
    "parse_update",
    "parse_plain_update",
    "parse_basic_auth",
    "parse_trusted_proxies",
    "client_address",
    "agent_allowed",
    "format_line",
    "format_body",
    "status_for",
    "www_authenticate",
    "checkip_body",
]


#: No-IP's limit on hostnames per request; more is answered `numhost` once.
MAX_HOSTS = 20
#: RFC 1035 limit on a name in presentation form without the trailing dot.
MAX_HOSTNAME_LENGTH = 253
#: A real client sends a handful of fields; a cap keeps hostile queries cheap.
MAX_QUERY_FIELDS = 100
DEFAULT_REALM = "DDNS update"
# IDNA mapping can drop characters (soft hyphens, zero-width joiners), so a raw
# name may be somewhat longer than 253 before encoding, but never this long.
_MAX_RAW_HOSTNAME = 1024

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Answer(StrEnum):
    """The answer codes routers understand; the value is the exact wire text."""

    GOOD = "good"
    NOCHG = "nochg"
    NOHOST = "nohost"
    NOTFQDN = "notfqdn"
    NUMHOST = "numhost"
    BADAUTH = "badauth"
    BADAGENT = "badagent"
    NOT_DONATOR = "!donator"
    ABUSE = "abuse"
    DNSERR = "dnserr"
    SERVER_ERROR = "911"


# --------------------------------------------------------------------------- hostnames


def normalize_hostname(raw: str) -> str | None:
    """Return the lower-case ASCII (IDNA) form of a host FQDN, or None when malformed."""
    name = raw.strip().lower()
    if len(name) > _MAX_RAW_HOSTNAME:
        return None  # spare the codec work on input no mapping could shrink to a name
    if name.isascii():
        # What routers send: the codec would hand ASCII labels back unchanged (it only checks lengths,
        # which _is_valid_fqdn checks too), so skip its per-label Python work on the hot path.
        ascii_name = name
    else:
        try:
            # The stdlib codec (IDNA 2003) also splits on the ideographic full stops
            # a phone keyboard may produce, so encode before dropping the root dot.
            ascii_name = name.encode("idna").decode("ascii")
        except ValueError:  # UnicodeError is a ValueError: bad labels, nameprep refusals
            return None
    ascii_name = ascii_name.lower().removesuffix(".")
    return ascii_name if _is_valid_fqdn(ascii_name) else None


# A label is 1-63 of [a-z0-9-], neither starting nor ending with "-". Written with a possessive count and
# look-arounds rather than "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", which backtracks a step at every label's
# end: the same language (test_fqdn_regex_equals_label_rules) at about half the cost per update.
_PLAIN_LABEL = r"(?!-)[a-z0-9-]{1,63}+(?<!-)"
_PLAIN_FQDN = re.compile(rf"(?:{_PLAIN_LABEL}\.)+{_PLAIN_LABEL}")
_PLAIN_FQDN_DOT = re.compile(_PLAIN_FQDN.pattern + r"\.?")  # as sent: the root dot allowed


def _is_valid_fqdn(name: str) -> bool:
    if "xn--" not in name:
        # No A-label to decode: _is_valid_fqdn_by_label's rules as one regex (at least two labels, each _LABEL).
        return len(name) <= MAX_HOSTNAME_LENGTH and _PLAIN_FQDN.fullmatch(name) is not None and \
            not name.rpartition(".")[2].isdigit()
    return _is_valid_fqdn_by_label(name)


def _is_valid_fqdn_by_label(name: str) -> bool:
    labels = name.split(".")
    if len(name) > MAX_HOSTNAME_LENGTH or len(labels) < 2:
        return False
    # An all-numeric last label would make the name look like an IPv4 address.
    if labels[-1].isdigit():
        return False
    return all(_is_valid_label(label) for label in labels)


def _is_valid_label(label: str) -> bool:
    if not _LABEL.fullmatch(label):
        return False
    if label.startswith("xn--"):
        return _is_valid_a_label(label)
    return True


def _is_valid_a_label(label: str) -> bool:
    # "xn--" promises Punycode; a label that does not decode is not a real name.
    try:
        label.encode("ascii").decode("idna")
    except ValueError:
        return False
    return True


class Requested(NamedTuple):  # a tuple: one per requested host on every update
    """One item of the `hostname` list, in request order.

    `token` is what the client sent (stripped, lower-cased), so a group name can
    be resolved and odd input echoed in logs; `fqdn` is its normalized host name,
    or None when the token is not a valid FQDN (maybe a group, else `notfqdn`).
    """

    token: str
    fqdn: str | None


def parse_hostnames(raw: str | None) -> tuple[list[Requested], Answer | None]:
    """Split the comma-separated `hostname` parameter; `numhost` when over the limit."""
    if raw and "," not in raw:  # one host, what nearly every router sends
        token = raw.strip().lower()
        return ([Requested(token, _token_fqdn(token))] if token else []), None
    tokens = [item.strip().lower() for item in (raw or "").split(",")]
    tokens = [token for token in tokens if token]
    if len(tokens) > MAX_HOSTS:
        # No-IP answers numhost once and updates nothing, so no hosts are returned.
        return [], Answer.NUMHOST
    return [Requested(token, _token_fqdn(token)) for token in tokens], None


def _token_fqdn(token: str) -> str | None:
    # Checked here as well so that IDNA mapping can never launder such a token.
    if len(token) > MAX_HOSTNAME_LENGTH:
        return None
    if _PLAIN_FQDN_DOT.fullmatch(token) is not None and "xn--" not in token:
        # The common case in one regex (what normalize_hostname would conclude: lower-case ASCII labels,
        # no A-label to decode); only an all-numeric last label is left to check.
        name = token.removesuffix(".")
        return None if name.rpartition(".")[2].isdigit() else name
    if _CONTROL.search(token):
        return None
    return normalize_hostname(token)


# --------------------------------------------------------------------------- addresses


def parse_ip_params(myip: str | None, myipv6: str | None) -> tuple[IPv4Address | None, IPv6Address | None]:
    """Read `myip` (v4, v6, or "v4,v6" in either order) and `myipv6`.

    A malformed value yields None for that family so the caller falls back to the
    connecting address. An explicit `myipv6` wins over a v6 given in `myip`.
    """
    ipv4, ipv6, _ = parse_addresses(myip, myipv6)
    return ipv4, ipv6


def parse_addresses(myip: str | None, myipv6: str | None, prefix: str | None = None,
                    ) -> tuple[IPv4Address | None, IPv6Address | None, IPv6Network | None]:
    """`parse_ip_params`, and the IPv6 prefix a router may send for its LAN (FRITZ!Box: `<ip6lanprefix>`):
    as a part of `myip` ("v4,2001:db8:1:2::/64", or the prefix alone), in place of the `myipv6` address, or
    in its own field (`prefix`: `ip6lanprefix=` or `ipv6prefix=`), which wins. An empty part is no part."""
    v6_field, v6_prefix = (None, parse_prefix(myipv6)) if myipv6 and "/" in myipv6 else (myipv6, None)
    if myip and "/" in myip:
        parts = [part for part in myip.split(",") if part.strip()]
        prefixes = [part for part in parts if "/" in part]
        parsed = [parse_prefix(part) for part in prefixes]
        myip_prefix = parsed[0] if len(parsed) == 1 else None  # two prefixes: we cannot tell which is meant
        ipv4, ipv6 = _split_myip(",".join(part for part in parts if "/" not in part))
    else:
        myip_prefix = None
        ipv4, ipv6 = _split_myip(myip)
    explicit_v6 = parse_ip(v6_field)
    if isinstance(explicit_v6, IPv6Address):
        ipv6 = explicit_v6
    return ipv4, ipv6, parse_prefix(prefix) or v6_prefix or myip_prefix


def parse_prefix(raw: str | None) -> IPv6Network | None:
    """An IPv6 prefix "2001:db8:1:2::/64" (host bits forgiven, as routers send the LAN's first address);
    None when absent or unusable: not IPv6, no prefix length, /0, multicast or unspecified."""
    if not raw or "/" not in raw:
        return None
    try:
        network = IPv6Network(raw.strip(), strict=False)
    except ValueError:
        return None
    if network.prefixlen == 0 or network.network_address.is_multicast or network.network_address.is_unspecified:
        return None
    return network


def combine(prefix: IPv6Network, interface_id: IPv6Address) -> IPv6Address:
    """The address in ``prefix`` whose bits beyond the prefix are ``interface_id``'s."""
    return IPv6Address(int(prefix.network_address) | (int(interface_id) & int(prefix.hostmask)))


def _split_myip(myip: str | None) -> tuple[IPv4Address | None, IPv6Address | None]:
    if myip and "," not in myip:  # one address, the usual case
        address = parse_ip(myip)
        return (address, None) if isinstance(address, IPv4Address) else (None, address)
    parts = [part for part in (myip or "").split(",") if part.strip()]
    if len(parts) > 2:
        return None, None  # not one address per family: we cannot tell which is meant
    found = [address for address in map(parse_ip, parts) if address is not None]
    v4 = [address for address in found if isinstance(address, IPv4Address)]
    v6 = [address for address in found if isinstance(address, IPv6Address)]
    # Two addresses of one family are ambiguous, so that family counts as absent.
    return (v4[0] if len(v4) == 1 else None), (v6[0] if len(v6) == 1 else None)


def parse_offline(value: str | None) -> bool | None:
    """`offline=YES|NO` (any case); None when absent or anything else."""
    return {"yes": True, "no": False}.get((value or "").strip().lower())


# --------------------------------------------------------------------------- request


class UpdateRequest(NamedTuple):  # a tuple: built on every update
    """What a `/nic/update` query asks for, after parsing.

    `error` is an answer due before any credential or host is looked at (numhost).
    `ipv4`/`ipv6` are None when not given or malformed: the service then uses the
    connecting address. `ipv6_prefix`: the router's LAN prefix, for hosts with an
    IPv6 interface id (the others take the addresses as usual). `system`, `wildcard`,
    `mx`, `backmx` and unknown fields are accepted and ignored, as No-IP does, so old
    ddclient configurations keep working.
    """

    hosts: tuple[Requested, ...] = ()
    error: Answer | None = None
    ipv4: IPv4Address | None = None
    ipv6: IPv6Address | None = None
    offline: bool | None = None
    ipv6_prefix: IPv6Network | None = None

    @property
    def has_address(self) -> bool:
        return self.ipv4 is not None or self.ipv6 is not None


def parse_update(query: Mapping[str, str] | bytes | str) -> UpdateRequest:
    """Parse the query (a framework's mapping, or the raw query string)."""
    params = query if isinstance(query, Mapping) else _parse_query(query)
    if params is None:
        # Only a hostile or broken client sends this many fields; refuse once,
        # updating nothing (a group login without hostname would update all hosts).
        return UpdateRequest(error=Answer.NUMHOST)
    hosts, error = parse_hostnames(params.get("hostname"))
    # myip6 is dyndnsd's spelling of myipv6; ip6lanprefix and ipv6prefix name a prefix in custom update URLs.
    ipv4, ipv6, prefix = parse_addresses(params.get("myip"), params.get("myipv6") or params.get("myip6"),
                                         params.get("ip6lanprefix") or params.get("ipv6prefix"))
    return UpdateRequest(tuple(hosts), error, ipv4, ipv6, parse_offline(params.get("offline")), prefix)


def parse_plain_update(query: bytes) -> tuple[str, IPAddress | None] | None:
    """``parse_update``'s answer for the query nearly every router sends, in one pass: ``(fqdn, address)`` for
    one host name and at most one address in ``myip`` (None: absent or unusable, so the connecting address
    is meant). None for every other query, which says nothing about it: ``parse_update`` then decides.

    The shape: ASCII without ``%``, ``+``, ``,`` or ``/`` (no unquoting, one host, one address, no prefix), no
    ``myipv6``, ``myip6``, ``offline`` or prefix field, and a ``hostname`` that is a valid FQDN. Other fields are
    ignored, as by ``parse_update``; ``tests/test_update_quick.py`` property-tests the two against each other.
    """
    if not query.isascii():
        return None
    text = query.decode("ascii")
    if "%" in text or "+" in text or "," in text or "/" in text:
        return None
    fields = text.split("&")
    if len(fields) > MAX_QUERY_FIELDS:
        return None
    hostname = myip = None
    for field in fields:
        name, _, value = field.partition("=")
        if name == "hostname":
            hostname = value  # the last one wins, as in _parse_plain_query's dict
        elif name == "myip":
            myip = value
        elif name in _NOT_PLAIN:
            return None
    # Unstripped and mixed-case tokens still reach normalize_hostname, which strips and lower-cases.
    fqdn = _token_fqdn(hostname) if hostname else None
    if fqdn is None:
        return None  # no host, or a token that is no FQDN (a group name, or notfqdn)
    return fqdn, parse_ip(myip) if myip else None


_NOT_PLAIN = frozenset(("myipv6", "myip6", "offline", "ip6lanprefix", "ipv6prefix"))


def _parse_query(query: bytes | str) -> dict[str, str] | None:
    if isinstance(query, bytes):
        # parse_qsl would decode bytes as strict ASCII and raise on anything else.
        query = query.decode("utf-8", errors="replace")
    if "%" not in query and "+" not in query:
        return _parse_plain_query(query)
    return _parse_qsl_query(query)


def _parse_plain_query(query: str) -> dict[str, str] | None:
    """``_parse_qsl_query`` for a query without ``%`` or ``+`` (what routers send), where unquoting is the
    identity: the same field count limit, blank fields skipped, a field without ``=`` kept blank."""
    if query and query.count("&") >= MAX_QUERY_FIELDS:
        return None
    params: dict[str, str] = {}
    for field in query.split("&"):
        if field:
            name, _, value = field.partition("=")
            params[name] = value
    return params


def _parse_qsl_query(query: str) -> dict[str, str] | None:
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, errors="replace", max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        return None
    # Last value wins for a repeated field, as with Starlette's query_params.
    return dict(pairs)


# --------------------------------------------------------------------------- credentials


def parse_basic_auth(header: str | bytes | None) -> tuple[str, str] | None:
    """Return (username, password) from an `Authorization: Basic ...` header, else None."""
    if header is None:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")  # HTTP header bytes; latin-1 maps every byte
    scheme, _, param = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    decoded = _b64decode(param.strip())
    if decoded is None or b":" not in decoded:
        return None
    username, _, password = decoded.partition(b":")
    if not username:
        return None
    return _decode_credential(username), _decode_credential(password)


def _b64decode(text: str) -> bytes | None:
    # Some clients leave out the padding; restoring it costs nothing.
    padded = text + "=" * (-len(text) % 4)
    try:
        # What base64.b64decode(padded, validate=True) runs, without its Python wrapper.
        return binascii.a2b_base64(padded, strict_mode=True)
    except (binascii.Error, ValueError):  # bad alphabet, bad padding, non-ASCII text
        return None


def _decode_credential(raw: bytes) -> str:
    # RFC 7617 says UTF-8, but old routers send latin-1; latin-1 decodes every byte.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def agent_allowed(user_agent: str | None, blocklist: Sequence[str]) -> bool:
    """False for a missing/blank User-Agent or one matching the operator's blocklist.

    Entries match case-insensitively as fnmatch globs ("curl/*") or as substrings.
    """
    if not blocklist:  # the default: only a missing or blank agent is refused
        return bool(user_agent and not user_agent.isspace())
    agent = (user_agent or "").strip().lower()
    if not agent:
        return False
    patterns = (entry.strip().lower() for entry in blocklist)
    return not any(_agent_matches(agent, pattern) for pattern in patterns if pattern)


def _agent_matches(agent: str, pattern: str) -> bool:
    return pattern in agent or fnmatch.fnmatchcase(agent, pattern)


# --------------------------------------------------------------------------- answers


def format_line(
    answer: Answer,
    ipv4: IPv4Address | str | None = None,
    ipv6: IPv6Address | str | None = None,
) -> str:
    """One answer line: "good 1.2.3.4", "nochg ::1", "good 1.2.3.4,::1", "nohost"."""
    # Only good/nochg report an address; the other codes stand alone on the wire.
    if answer not in (Answer.GOOD, Answer.NOCHG):
        return answer.value
    addresses = ",".join(str(address) for address in (ipv4, ipv6) if address is not None)
    return f"{answer.value} {addresses}" if addresses else answer.value


def format_body(lines: Iterable[str]) -> str:
    """The text/plain body: the answer lines joined by newlines, with a final newline."""
    return "\n".join(lines) + "\n"


def status_for(answer: Answer) -> int:
    """HTTP status: 401 for badauth (with WWW-Authenticate), 200 for everything else."""
    return 401 if answer is Answer.BADAUTH else 200


def www_authenticate(realm: str) -> str:
    """The `WWW-Authenticate` value for a badauth answer, realm safely quoted."""
    # A quoted-string may not hold control characters, and a header must be latin-1.
    cleaned = _CONTROL.sub("", realm).encode("latin-1", errors="replace").decode("latin-1")
    quoted = cleaned.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{quoted}"'


WWW_AUTHENTICATE = www_authenticate(DEFAULT_REALM)


# --------------------------------------------------------------------------- check-ip

# checkip.dyndns.org's page, byte for byte: ddclient's ``web=dyndns`` reads the address after its
# "Current IP Address:", and scripts written against dyndns.org match the whole line.
CHECKIP_PAGE = "<html><head><title>Current IP Check</title></head><body>Current IP Address: {}</body></html>"
_CHECKIP_HTML = "text/html; charset=utf-8"
_CHECKIP_PLAIN = "text/plain; charset=utf-8"


def checkip_body(address: str, accept: str | None) -> tuple[str, str]:
    """``GET /nic/checkip``'s content type and body: the page above, or the address alone when the client
    prefers ``text/plain`` to ``text/html`` (``Accept: text/plain``). No Accept header, ``*/*`` or a tie gets
    the page, which is what ddclient and dyndns.org-era scripts expect."""
    if _quality(accept, "text", "plain") > _quality(accept, "text", "html"):
        return _CHECKIP_PLAIN, address
    return _CHECKIP_HTML, CHECKIP_PAGE.format(address)


def _quality(accept: str | None, kind: str, subtype: str) -> float:
    """The q-value ``accept`` gives ``kind/subtype`` by its most specific matching range (RFC 9110 12.5.1);
    1 without a header. A malformed q counts as 0: garbage never wins a negotiation."""
    if accept is None:
        return 1.0
    best, specificity = 0.0, -1
    for item in accept.split(",")[:MAX_QUERY_FIELDS]:
        media, *params = item.split(";")
        range_kind, _, range_subtype = media.strip().lower().partition("/")
        if range_kind == kind and range_subtype == subtype:
            rank = 2
        elif range_kind == kind and range_subtype == "*":
            rank = 1
        elif range_kind == "*" and range_subtype == "*":
            rank = 0
        else:
            continue
        if rank > specificity:
            best, specificity = _q(params), rank
    return best


def _q(params: Sequence[str]) -> float:
    for param in params:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0  # also refuses nan and inf
    return 1.0
