"""Reserved and special-purpose address ranges (RFC 6890 and the IANA special-purpose
registries it created, plus multicast): no public database or provider list places them.

An explicit table, searched with one bisect: ``ipaddress``'s ``is_global`` walks a list of
networks per call (about 5 µs here), which the first lookup of every address would pay.
"""

from __future__ import annotations

import bisect
import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RESERVED = {
    4: (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private (RFC 1918)
        "100.64.0.0/10",  # shared address space, CGNAT (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1 (documentation)
        "192.88.99.0/24",  # deprecated 6to4 relay anycast (RFC 7526)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved for future use, and 255.255.255.255 broadcast
    ),
    6: (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::ffff:0:0/96",  # IPv4-mapped (judged by the IPv4 address before we get here)
        "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation (RFC 8215)
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments (Teredo is judged by its IPv4 host first)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # segment routing SIDs (RFC 9602)
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "ff00::/8",  # multicast
    ),
}


def _spans(networks: tuple[str, ...]) -> tuple[list[int], list[int]]:
    parsed = sorted(ipaddress.ip_network(n) for n in networks)
    return [int(n.network_address) for n in parsed], [int(n.broadcast_address) for n in parsed]


_TABLES = {version: _spans(networks) for version, networks in RESERVED.items()}


def is_reserved(ip: IPAddress) -> bool:
    starts, ends = _TABLES[ip.version]
    value = int(ip)
    i = bisect.bisect_right(starts, value) - 1
    return i >= 0 and value <= ends[i]
