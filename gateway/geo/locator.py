"""Address → Jurisdiction: config overrides first, then the databases in order.

Reserved and special-purpose addresses (private, loopback, link-local, CGNAT, documentation,
multicast, ...) get no country from a public database: only an override, or a database the
admin marked ``answers_reserved`` (a site database of internal ranges), may place them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from gateway.config import Geo, Override
from gateway.geo.database import GeoDatabaseReader
from gateway.model import GeoAnswer, Jurisdiction, Location

_CACHE_MAX = 65536
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 host an IPv6 address really reaches: mapped, 6to4, Teredo, NAT64.

    Databases place whole transition prefixes in one country (DB-IP says all of 2002::/16 is
    US), so judging the IPv6 form would let 6to4 to a foreign host pass as domestic.
    """
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_reserved(ip: IPAddress) -> bool:
    return not ip.is_global or ip.is_multicast


class Locator:
    def __init__(
        self,
        allowed_countries: Sequence[str],
        databases: Sequence[GeoDatabaseReader],
        overrides: Sequence[Override] = (),
    ) -> None:
        self.allowed = frozenset(allowed_countries)
        self.databases = tuple(databases)
        # Most specific prefix first, so the first match is the one that wins.
        self.overrides = tuple(sorted(overrides, key=lambda o: -o.cidr.prefixlen))
        self._cache: dict[str, Jurisdiction] = {}

    @classmethod
    def from_config(cls, allowed_countries: Sequence[str], geo: Geo) -> Locator:
        readers = [
            GeoDatabaseReader(db.path, answers_reserved=db.answers_reserved) for db in geo.databases
        ]
        return cls(allowed_countries, readers, geo.overrides)

    def locate(self, address: str) -> Jurisdiction:
        cached = self._cache.get(address)
        if cached is None:
            cached = self._locate(address)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[address] = cached
        return cached

    def _verdict(
        self, ip: str, country: str, evidence: list[GeoAnswer], reason: str
    ) -> Jurisdiction:
        location = Location.DOMESTIC if country in self.allowed else Location.FOREIGN
        return Jurisdiction(ip, location, country, tuple(evidence), reason)

    def _locate(self, address: str) -> Jurisdiction:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return Jurisdiction(address, Location.UNKNOWN, None, (), "not-an-address")
        if isinstance(ip, ipaddress.IPv6Address):
            ip = embedded_ipv4(ip) or ip
        evidence: list[GeoAnswer] = []
        for override in self.overrides:
            if ip.version == override.cidr.version and ip in override.cidr:
                evidence.append(GeoAnswer(f"override:{override.cidr}", override.country))
                return self._verdict(str(ip), override.country, evidence, "override")
        reserved = is_reserved(ip)
        for db in self.databases:
            if reserved and not db.answers_reserved:
                continue
            country = db.country(str(ip))
            evidence.append(GeoAnswer(f"db:{db.name}", country))
            if country:
                return self._verdict(str(ip), country, evidence, "database")
        if reserved and not evidence:
            evidence.append(GeoAnswer("reserved", None))
            return Jurisdiction(str(ip), Location.UNKNOWN, None, tuple(evidence), "reserved")
        return Jurisdiction(str(ip), Location.UNKNOWN, None, tuple(evidence), "no-answer")

    def close(self) -> None:
        for db in self.databases:
            db.close()
