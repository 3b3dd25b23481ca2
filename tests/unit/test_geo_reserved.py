"""The reserved-range table against Python's own special-purpose lists."""

from __future__ import annotations

import ipaddress
import random

import pytest

from gateway.geo.reserved import RESERVED, is_reserved

# Where the table is deliberately stricter than ``not is_global``: ranges the registry marks
# special-purpose that some Python versions call global. Never the other way round.
STRICTER = [
    ipaddress.ip_network(n)
    for n in (
        "192.0.0.0/24",
        "2001::/23",
        "3fff::/20",
        "5f00::/16",
        "64:ff9b:1::/48",
        "192.88.99.0/24",
    )
]


def python_says_reserved(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not ip.is_global or ip.is_multicast


@pytest.mark.parametrize(
    ("address", "reserved"),
    [
        ("10.1.2.3", True),
        ("100.64.0.1", True),
        ("100.128.0.1", False),
        ("127.255.255.255", True),
        ("203.0.113.255", True),
        ("203.0.114.0", False),
        ("198.51.100.7", True),
        ("192.0.2.1", True),
        ("224.0.0.1", True),
        ("255.255.255.255", True),
        ("8.8.8.8", False),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("ff02::1", True),
        ("2001:db8::1", True),
        ("2600:1f00::1", False),
        ("2a00:1450::1", False),
    ],
)
def test_known_addresses(address: str, reserved: bool) -> None:
    assert is_reserved(ipaddress.ip_address(address)) is reserved


def test_table_agrees_with_python_on_random_and_edge_addresses() -> None:
    rng = random.Random(6890)
    samples: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(20000)
    ]
    samples += [ipaddress.IPv6Address(rng.getrandbits(128)) for _ in range(5000)]
    for networks in RESERVED.values():
        for text in networks:
            network = ipaddress.ip_network(text)
            for value in (int(network.network_address) - 1, int(network.broadcast_address) + 1):
                if 0 <= value < 2**network.max_prefixlen:
                    samples.append(ipaddress.ip_address(value))
            samples += [network.network_address, network.broadcast_address]
    for ip in samples:
        ours, python = is_reserved(ip), python_says_reserved(ip)
        if ours == python:
            continue
        assert ours and any(ip in n for n in STRICTER if n.version == ip.version), ip
