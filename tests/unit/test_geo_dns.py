"""A host is judged by every address it resolves to (A and AAAA), and its flows connect to an
address that was judged. DNS is a stub answering from a table (loopback and documentation
addresses only); the geo data is a test database written with mmdb-writer."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from addons.phi_gateway import PhiGateway
from gateway.audit import AuditEvent
from gateway.audit.store import AuditStore
from gateway.config import parse_config
from gateway.engine import Gateway
from gateway.model import Destination, Format, Inspection, Location, Message, Protocol
from gateway.policy import effective_location
from tests.support.geo_world import build_world
from tests.support.mmdb import DOMESTIC_IP, FOREIGN_IP, build_test_mmdb

# 127.0.0.1 US, 127.0.0.2 IN (the test world); ::ffff:127.0.0.2 is the IPv6 form of the latter.
ZONE: dict[str, list[str]] = {
    "home.test": [DOMESTIC_IP],
    "split.test": [DOMESTIC_IP, FOREIGN_IP],  # one A record at home, one abroad
    "aaaa.test": [DOMESTIC_IP, f"::ffff:{FOREIGN_IP}"],  # the AAAA record is abroad
}


class StubDns:
    def __init__(self) -> None:
        self.zone = {name: list(addresses) for name, addresses in ZONE.items()}
        self.queries = 0

    def getaddrinfo(self, host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        self.queries += 1
        if host not in self.zone:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 0))
            for ip in self.zone[host]
        ]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> StubDns:
    stub = StubDns()
    monkeypatch.setattr(socket, "getaddrinfo", stub.getaddrinfo)
    return stub


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    mmdb = build_test_mmdb(tmp_path / "world.mmdb")
    config = parse_config(
        {
            "geo": {
                "databases": [{"path": str(mmdb), "answers_reserved": True}],
                "provider_ranges": None,
                "dns_cache_seconds": 0,
            },
            "audit": {"database": str(tmp_path / "audit.db")},
        }
    )
    gw = Gateway.from_config(config)
    yield gw
    gw.close()


async def locate(gateway: Gateway, host: str) -> Destination:
    """Every address the host resolves to, judged (as the addon judges a request's host)."""
    return gateway.judge(host, 443, await gateway.resolver.resolve(host))


def test_every_address_is_judged_and_one_abroad_makes_the_host_foreign(
    dns: StubDns, gateway: Gateway
) -> None:
    home = asyncio.run(locate(gateway, "home.test"))
    assert effective_location(home, gateway.config) is Location.DOMESTIC
    for host in ("split.test", "aaaa.test"):
        destination = asyncio.run(locate(gateway, host))
        assert len(destination.addresses) == 2, host
        assert [j.location for j in destination.addresses] == [Location.DOMESTIC, Location.FOREIGN]
        assert destination.verdict.country == "IN"
        assert effective_location(destination, gateway.config) is Location.FOREIGN


def test_a_name_that_does_not_resolve_is_unknown(dns: StubDns, gateway: Gateway) -> None:
    destination = asyncio.run(locate(gateway, "nowhere.test"))
    assert destination.addresses == ()
    assert destination.verdict.reason == "resolution-failed"
    assert effective_location(destination, gateway.config) is Location.FOREIGN


def test_flows_connect_to_a_judged_address_while_dns_changes(
    dns: StubDns, gateway: Gateway
) -> None:
    addon = PhiGateway(gateway)

    async def scenario() -> None:
        first, key = await addon._locate(gateway, "home.test", 443)
        assert [j.ip for j in first.addresses] == [DOMESTIC_IP]
        assert addon.pins.pinned(key) == DOMESTIC_IP
        dns.zone["home.test"] = [FOREIGN_IP]  # rebinding while the first flow is open
        second, _ = await addon._locate(gateway, "home.test", 443)
        # Judged against the pinned address, and the pin is what the connection uses.
        assert [j.ip for j in second.addresses] == [DOMESTIC_IP]
        assert addon.pins.pinned(key) == DOMESTIC_IP
        # A multi-address answer: the pin is one of the judged addresses.
        split, split_key = await addon._locate(gateway, "split.test", 443)
        pinned = addon.pins.pinned(split_key)
        assert pinned in {j.ip for j in split.addresses}
        assert effective_location(split, gateway.config) is Location.FOREIGN

    asyncio.run(scenario())


def _count(kind: str) -> float:
    value = REGISTRY.get_sample_value("phi_gateway_geo_source_disagreements_total", {"kind": kind})
    return value or 0.0


def test_disagreements_are_counted_and_evidence_reaches_the_audit_row(tmp_path: Path) -> None:
    ranges, alpha, beta = build_world(tmp_path)
    config = parse_config(
        {
            "geo": {"databases": [str(alpha), str(beta)], "provider_ranges": str(ranges)},
            "audit": {"database": str(tmp_path / "audit.db")},
        }
    )
    gw = Gateway.from_config(config, AuditStore(tmp_path / "audit.db"))
    try:
        before = (_count("databases"), _count("provider-vs-database"))
        destination = gw.judge("api.example", 443, ["8.8.8.8", "52.0.0.1"])
        after = (_count("databases"), _count("provider-vs-database"))
        assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
        message = Message(Protocol.HTTP1, "127.0.0.1:5000", "api.example", 443, body=b"")
        decision = gw.evaluate(message, destination, Inspection(Format.EMPTY))
        event = AuditEvent.from_decision(decision, "test", "v1")
        evidence = json.loads(event.geo_evidence)
        assert evidence[0]["rule"] == "any-foreign: db:beta said DE"
        assert evidence[0]["disagreement"] == "databases"
        assert {s["source"] for s in evidence[0]["sources"]} == {"db:alpha", "db:beta"}
        provider = evidence[1]["sources"][0]
        assert provider == {
            "source": "provider:aws",
            "country": "US",
            "version": "2026-08-22",
            "detail": "us-east-1 52.0.0.0/12",
        }
        gw.publish_metrics()
        aws_age = REGISTRY.get_sample_value(
            "phi_gateway_geo_source_age_seconds", {"source": "provider:aws"}
        )
        assert aws_age is not None and aws_age > 90 * 86400  # the list is from 2026-08-22
    finally:
        gw.close()
