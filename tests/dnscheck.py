"""Ask the real DNS server what a resolver would see (dnspython; dig in one test)."""

from __future__ import annotations

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


def lookup(server_port: int, name: str, rdtype: str) -> list[str]:
    query = dns.message.make_query(name, rdtype)
    response = dns.query.udp(query, "127.0.0.1", port=server_port, timeout=2)
    if response.rcode() != dns.rcode.NOERROR:
        return []
    return sorted(
        rr.to_text() for rrset in response.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rr in rrset
    )


def soa_serial(server_port: int, zone: str) -> int:
    query = dns.message.make_query(zone, "SOA")
    response = dns.query.udp(query, "127.0.0.1", port=server_port, timeout=2)
    return int(response.answer[0][0].serial)
