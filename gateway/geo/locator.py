"""Address → Jurisdiction: config overrides, cloud-provider prefix lists, then the databases.

Reserved and special-purpose addresses (private, loopback, link-local, CGNAT, documentation,
multicast, ...) get no country from a public database: only an override, or a database the
admin marked ``answers_reserved`` (a site database of internal ranges), may place them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.config import CombineRule, Geo, Override
from gateway.errors import GeoDatabaseError, RangesError
from gateway.geo.database import GeoDatabaseReader
from gateway.geo.ranges import Match, ProviderRanges
from gateway.geo.reserved import is_reserved
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


class Locator:
    """Overrides, then (for public addresses) the provider lists, then the databases.

    - an override (most specific CIDR) decides; reserved addresses get a country from nothing
      else but a database marked ``answers_reserved``;
    - a provider prefix (most specific) decides: its region's country, or ``unknown`` with
      reason ``anycast`` for global ranges. A region whose country is a guess does not decide
      alone: it joins the databases as their first answer;
    - the databases combine by ``rule``: ``first`` answer, or ``any-foreign`` (foreign when
      any names a country not allowed).

    Every source is asked (evidence shows them all); the combined answer is cached.
    """

    def __init__(
        self,
        allowed_countries: Sequence[str],
        databases: Sequence[GeoDatabaseReader],
        overrides: Sequence[Override] = (),
        providers: ProviderRanges | None = None,
        rule: CombineRule = CombineRule.ANY_FOREIGN,
    ) -> None:
        self.allowed = frozenset(allowed_countries)
        self.databases = tuple(databases)
        self.providers = providers
        self.rule = rule
        # Most specific prefix first, so the first match is the one that wins.
        self.overrides = tuple(sorted(overrides, key=lambda o: -o.cidr.prefixlen))
        self._override_spans = tuple(
            (o.cidr.version, int(o.cidr.network_address), int(o.cidr.broadcast_address), o)
            for o in self.overrides
        )
        self._cache: dict[str, Jurisdiction] = {}
        self._provider_versions = {
            name: info.date.isoformat() if info.date else ""
            for name, info in (providers.sources.items() if providers else ())
        }

    @classmethod
    def from_config(cls, allowed_countries: Sequence[str], geo: Geo) -> Locator:
        readers: list[GeoDatabaseReader] = []
        try:
            for db in geo.databases:
                readers.append(GeoDatabaseReader(db.path, answers_reserved=db.answers_reserved))
            providers = None
            if geo.provider_ranges is not None:
                try:
                    providers = ProviderRanges.load_shared(geo.provider_ranges)
                except RangesError as exc:
                    raise GeoDatabaseError(str(exc)) from None
        except GeoDatabaseError:
            for reader in readers:
                reader.close()
            raise
        return cls(allowed_countries, readers, geo.overrides, providers, geo.combine)

    def sources(self) -> list[Source]:
        """Every data source with its build date (for freshness checks and metrics)."""
        found = [Source(f"db:{db.name}", db.build_time) for db in self.databases]
        if self.providers is not None:
            for name, info in sorted(self.providers.sources.items()):
                built = (
                    dt.datetime.combine(info.date, dt.time(), tzinfo=dt.UTC) if info.date else None
                )
                found.append(Source(f"provider:{name}", built))
        return found

    def locate(self, address: str) -> Jurisdiction:
        cached = self._cache.get(address)
        if cached is None:
            cached = self._locate(address)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[address] = cached
        return cached

    def _located(self, ip: str, country: str, evidence: list[GeoAnswer], **kw: str) -> Jurisdiction:
        location = Location.DOMESTIC if country in self.allowed else Location.FOREIGN
        return Jurisdiction(ip, location, country, tuple(evidence), **kw)

    def _locate(self, address: str) -> Jurisdiction:
        try:
            parsed = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return Jurisdiction(address, Location.UNKNOWN, None, (), "not-an-address", "none")
        if isinstance(parsed, ipaddress.IPv6Address):
            parsed = embedded_ipv4(parsed) or parsed
        found = self._ask(parsed)
        return self._decide(str(parsed), found)

    def _ask(self, ip: IPAddress) -> _Answers:
        """Every source's answer for one address (reserved ones: overrides and site databases
        only)."""
        found = _Answers(reserved=is_reserved(ip))
        version, value = ip.version, int(ip)
        found.override = next(
            (o for v, lo, hi, o in self._override_spans if v == version and lo <= value <= hi),
            None,
        )
        if found.override is not None:
            rule = found.override
            found.evidence.append(GeoAnswer(f"override:{rule.cidr}", rule.country, "config"))
        if not found.reserved and self.providers is not None:
            found.provider = match = self.providers.lookup(ip)
            if match is not None:
                label = match.label
                detail = "anycast" if label.anycast else label.region
                if label.unsure:
                    detail += " (country guessed)"
                data = self._provider_versions.get(label.provider, "")
                detail = f"{detail} {match.network}"
                found.evidence.append(GeoAnswer(label.source, label.country, data, detail))
        text = str(ip)
        for db in self.databases:
            if found.reserved and not db.answers_reserved:
                continue
            country = db.country(text)
            found.evidence.append(GeoAnswer(f"db:{db.name}", country, db.version))
            if country:
                found.databases.append((f"db:{db.name}", country))
        return found

    def _decide(self, ip: str, found: _Answers) -> Jurisdiction:
        """Override, then a provider region that is not a guess, then the databases combined."""
        evidence = found.evidence
        disagreement = _disagreement(found.provider, found.databases)
        if found.override is not None:
            return self._located(
                ip, found.override.country, evidence, reason="override",
                rule=f"override {found.override.cidr}", disagreement=disagreement,
            )  # fmt: skip
        match = found.provider
        if match is not None and not match.label.unsure:
            label = match.label
            where = f"provider list: {label.provider} {label.region} {match.network}"
            if label.country is None:
                return Jurisdiction(
                    ip, Location.UNKNOWN, None, tuple(evidence), "anycast",
                    f"{where} has no single country (anycast/global)", disagreement,
                )  # fmt: skip
            return self._located(
                ip, label.country, evidence, reason="provider", rule=where,
                disagreement=disagreement,
            )  # fmt: skip
        answers = list(found.databases)
        if match is not None and match.label.country is not None:
            # A guessed region country counts as one more (the first) database answer.
            answers.insert(0, (match.label.source, match.label.country))
        if answers:
            source, country = self._combine(answers)
            return self._located(
                ip, country, evidence, reason="database",
                rule=f"{self.rule.value}: {source} said {country}", disagreement=disagreement,
            )  # fmt: skip
        if found.reserved:
            evidence.append(GeoAnswer("reserved", None, "RFC 6890"))
            return Jurisdiction(
                ip, Location.UNKNOWN, None, tuple(evidence), "reserved",
                "reserved range (RFC 6890): only an override places it",
            )  # fmt: skip
        return Jurisdiction(
            ip, Location.UNKNOWN, None, tuple(evidence), "no-answer", "no source knows it"
        )

    def _combine(self, answers: list[tuple[str, str]]) -> tuple[str, str]:
        """The answer that decides, given every (source, country) that answered."""
        if self.rule is CombineRule.ANY_FOREIGN:
            for source, country in answers:
                if country not in self.allowed:
                    return source, country
        return answers[0]

    def close(self) -> None:
        for db in self.databases:
            db.close()


@dataclass(slots=True)
class _Answers:
    """What the sources said about one address, before a rule picks the answer."""

    reserved: bool
    override: Override | None = None
    provider: Match | None = None
    evidence: list[GeoAnswer] = field(default_factory=list)
    databases: list[tuple[str, str]] = field(default_factory=list)  # (source, country)


@dataclass(frozen=True, slots=True)
class Source:
    name: str  # "db:dbip-country-lite", "provider:aws"
    built: dt.datetime | None  # None: the data carries no date (treated as stale)

    def age_seconds(self, now: dt.datetime) -> float | None:
        return None if self.built is None else (now - self.built).total_seconds()


def stale_sources(locator: Locator, max_age_days: int, now: dt.datetime) -> list[str]:
    """Human lines for every source older than ``max_age_days`` (or of unknown age)."""
    lines = []
    for source in locator.sources():
        age = source.age_seconds(now)
        if age is None:
            lines.append(f"{source.name}: data carries no date")
        elif age > max_age_days * 86400:
            built = source.built.date().isoformat() if source.built else "?"
            lines.append(
                f"{source.name}: built {built}, {int(age // 86400)} days old "
                f"(geo.max_source_age_days: {max_age_days})"
            )
    return lines


def _disagreement(provider: Match | None, answers: list[tuple[str, str]]) -> str:
    countries = {country for _, country in answers}
    claimed = provider.label.country if provider is not None else None
    if claimed is not None and countries - {claimed}:
        return "provider-vs-database"
    if len(countries) > 1:
        return "databases"
    return ""
