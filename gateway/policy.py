"""Decide stage: a pure function from (destination, inspection, policy) to a Verdict.

Order of rules (first match wins):
1. deny-list          → block everything, PHI or not
2. allow-list         → forward (recorded when it carries PHI); a rule with ``action: redact``
                        forwards PHI only after Safe Harbor redaction
3. domestic           → forward untouched
4. foreign / unknown, payload unreadable → block (fail closed); so is content no reader
   sees into (images, audio, scanned pages) unless ``policy.unreadable_media: allow``
5. foreign / unknown, PHI                → policy.foreign_phi_action (block or redact)
6. foreign / unknown, no PHI             → forward
Monitor mode turns every block into "forward and record" (``enforced=False``).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from gateway.config import (
    ClientAddress,
    DestinationRule,
    GatewayConfig,
    MediaTreatment,
    Mode,
    PolicyRule,
    RuleAction,
    UnknownTreatment,
)
from gateway.entry_expiry import iso
from gateway.model import (
    Action,
    Destination,
    Format,
    Inspection,
    Jurisdiction,
    Location,
    Verdict,
    split_client,
)


def effective_location(destination: Destination, config: GatewayConfig) -> Location:
    """Unknown locations are treated as configured (foreign unless the admin says otherwise):
    anycast addresses by ``geo.anycast``, others by ``geo.unknown``. Every address counts."""
    judged = destination.addresses or (destination.verdict,)
    treated = [_treat(j, config) for j in judged]
    return Location.FOREIGN if Location.FOREIGN in treated else Location.DOMESTIC


def _treat(judged: Jurisdiction, config: GatewayConfig) -> Location:
    if judged.location is not Location.UNKNOWN:
        return judged.location
    treatment = config.geo.anycast if judged.reason == "anycast" else config.geo.unknown
    return Location.DOMESTIC if treatment is UnknownTreatment.DOMESTIC else Location.FOREIGN


def needs_inspection(destination: Destination, config: GatewayConfig) -> bool:
    """Domestic traffic that no list names is forwarded untouched: no need to read it."""
    policy = config.policy
    if policy.deny_destinations or policy.allow_destinations:
        addresses = tuple(a.ip for a in destination.addresses)
        for rule in (*policy.deny_destinations, *policy.allow_destinations):
            if rule.matches(destination.host, destination.port, addresses):
                return True
    return effective_location(destination, config) is not Location.DOMESTIC


def relay_tls(destination: Destination, sni: str | None, config: GatewayConfig) -> str | None:
    """Why a TLS connection may be relayed encrypted instead of decrypted, as a bounded metric
    label ("domestic"), or None: decrypt it, and judge its requests as ever.

    ``destination``: the name the client asked for (CONNECT or SOCKS5; the original address
    in transparent mode) with every address the connection may use; ``sni``: the
    ClientHello's server name. Relayed only when every address is domestic (unknown and
    anycast as ``geo`` treats them), no list names the host by either name or covers any of
    the addresses, and the SNI does not name another host than the CONNECT name (that one
    might be listed under a name nobody asked about: decrypted, as before). The reasoning:
    docs/decisions.md, "Domestic TLS relayed, not decrypted (issue 19)".
    """
    proxy = config.proxy
    if not proxy.relay_domestic_tls or not destination.addresses:
        return None
    names = [destination.host]
    if sni:
        if _host_name(sni) != _host_name(destination.host) and not _is_address(destination.host):
            return None
        names.append(sni)
    policy = config.policy
    rules = (
        *policy.deny_destinations,
        *policy.allow_destinations,
        *proxy.inspect_domestic,
        *proxy.tls_passthrough,
    )
    if _names_any(rules, names, destination):
        return None
    if effective_location(destination, config) is not Location.DOMESTIC:
        return None
    return "domestic"


def _names_any(
    rules: tuple[DestinationRule, ...], names: list[str], destination: Destination
) -> bool:
    """A rule names the destination by any name, or a CIDR rule covers any one address (one
    is enough here: a relayed connection is never looked at again)."""
    port = destination.port
    singles = [(a.ip,) for a in destination.addresses]
    return any(
        rule.matches(name, port, addresses)
        for rule in rules
        for name in names
        for addresses in singles
    )


def _host_name(name: str) -> str:
    return name.lower().rstrip(".")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def client_address(client: str) -> ClientAddress | None:
    """The address of a message's client, IPv4 for an IPv4-mapped IPv6 address (a
    dual-stack listener reports those), None when it holds none."""
    try:
        address = ipaddress.ip_address(split_client(client)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def deciding_rule(
    destination: Destination, config: GatewayConfig, client: str = "", now: float | None = None
) -> tuple[str, PolicyRule] | None:
    """The first list entry that decides a message from ``client`` to ``destination`` (deny
    entries before allow entries), or None: the destination's location decides."""
    policy = config.policy
    if not (policy.deny_destinations or policy.allow_destinations):
        return None
    addresses = tuple(a.ip for a in destination.addresses)
    when = time.time() if now is None else now
    peer = client_address(client) if policy.scoped else None
    for key, rule in policy.rules():
        if rule.mismatch(destination.host, destination.port, addresses, peer, when) is None:
            return key, rule
    return None


def decide(
    destination: Destination,
    inspection: Inspection,
    config: GatewayConfig,
    client: str = "",
    now: float | None = None,
) -> Verdict:
    """``client``: the message's sender ("ip:port"), for entries limited to some clients;
    ``now``: the time expiring entries are judged at (default: this moment)."""
    policy = config.policy
    monitor = policy.mode is Mode.MONITOR
    found = deciding_rule(destination, config, client, now)
    if found is not None and found[0].startswith("deny"):
        rule = found[1]
        return Verdict(
            Action.BLOCK,
            "deny-list",
            f"destination is deny-listed: {_cited(rule)}",
            enforced=not monitor,
            record=True,
        )
    if found is not None:
        rule = found[1]
        if rule.action is RuleAction.REDACT:
            if not inspection.inspected or inspection.opaque:
                pass  # what cannot be read cannot be redacted: judged by location below
            elif inspection.contains_phi:
                return Verdict(
                    Action.REDACT,
                    "redact-list",
                    f"destination receives de-identified data only: {_cited(rule)}",
                    enforced=not monitor,
                    record=True,
                )
            else:
                return Verdict(Action.ALLOW, "redact-list", "no PHI found")
        else:
            return Verdict(
                Action.ALLOW,
                "allow-list",
                f"destination is allow-listed: {_cited(rule)}",
                record=inspection.contains_phi
                or not inspection.inspected
                or bool(inspection.opaque),
            )

    if effective_location(destination, config) is Location.DOMESTIC:
        return Verdict(Action.ALLOW, "domestic", "destination is inside the allowed jurisdictions")

    where = _where(destination)
    if not inspection.inspected:
        return Verdict(
            Action.BLOCK,
            "uninspectable",
            f"payload to {where} could not be inspected ({inspection.error}); failing closed",
            enforced=not monitor,
            record=True,
        )
    if inspection.opaque and policy.unreadable_media is MediaTreatment.BLOCK:
        return Verdict(
            Action.BLOCK,
            "unreadable-media",
            f"payload to {where} holds content that cannot be read ({inspection.opaque}); "
            "failing closed (policy.unreadable_media)",
            enforced=not monitor,
            record=True,
        )
    if inspection.contains_phi:
        return Verdict(
            Action(policy.foreign_phi_action.value),
            "foreign-phi",
            f"{inspection.format.value} payload identifying a patient to {where}",
            enforced=not monitor,
            record=True,
        )
    return Verdict(Action.ALLOW, "foreign-no-phi", f"no PHI found in payload to {where}")


def _cited(rule: PolicyRule) -> str:
    """The entry's reason with its ticket: the trail says which exception let PHI through."""
    return f"{rule.reason} (ticket {rule.ticket})" if rule.ticket else rule.reason


@dataclass(frozen=True, slots=True)
class EntryCheck:
    """One list entry, as ``explain`` found it: ``decides``, or why it does not
    (``destination``, ``expired``, ``client``), or ``not reached`` (an earlier one decides)."""

    key: str  # allow_destinations[0]
    rule: PolicyRule
    outcome: str

    def describe(self) -> str:
        """The outcome in words (``policy explain`` and the console)."""
        rule = self.rule
        if self.outcome == "decides":
            action = "block" if self.key.startswith("deny") else rule.action.value
            return f"DECIDES ({action}: {rule.reason})"
        if self.outcome == "expired":
            assert rule.expires_at is not None
            return f"names it, but expired at {iso(rule.expires_at)}"
        if self.outcome == "client":
            return f"names it, for clients {', '.join(rule.clients)} only"
        if self.outcome == "destination":
            return "does not name this destination"
        return "not reached"


@dataclass(frozen=True, slots=True)
class Explanation:
    client: ClientAddress | None
    groups: tuple[str, ...]  # the client groups the client is in
    location: Location  # the destination's, as the policy treats unknown and anycast
    entries: tuple[EntryCheck, ...]
    verdicts: tuple[tuple[str, Verdict], ...]  # by what the payload turns out to hold


# What a payload may turn out to hold: ``explain`` decides each, with decide() itself.
_PAYLOADS = (
    ("no PHI", Inspection(Format.JSON)),
    ("PHI", Inspection(Format.JSON, contains_phi=True)),
    ("unreadable", Inspection(Format.BINARY, error="cannot be read")),
    ("image, audio or scan", Inspection(Format.BINARY, opaque="image")),
)


def explain(
    destination: Destination, config: GatewayConfig, client: str = "", now: float | None = None
) -> Explanation:
    """Which entry decides a message from ``client`` to ``destination`` and why every other
    does not, and the verdict for each kind of payload (``phi-gateway policy explain``)."""
    policy = config.policy
    when = time.time() if now is None else now
    peer = client_address(client)
    addresses = tuple(a.ip for a in destination.addresses)
    checks: list[EntryCheck] = []
    decided = False
    for key, rule in policy.rules():
        if decided:
            checks.append(EntryCheck(key, rule, "not reached"))
            continue
        why = rule.mismatch(destination.host, destination.port, addresses, peer, when)
        checks.append(EntryCheck(key, rule, why or "decides"))
        decided = why is None
    groups = tuple(
        name
        for name, networks in policy.client_groups.items()
        if peer is not None and any(peer in network for network in networks)
    )
    verdicts = tuple(
        (payload, decide(destination, inspection, config, client, when))
        for payload, inspection in _PAYLOADS
    )
    return Explanation(
        peer, groups, effective_location(destination, config), tuple(checks), verdicts
    )


def _where(destination: Destination) -> str:
    verdict = destination.verdict
    if verdict.location is Location.FOREIGN:
        return f"a foreign destination ({verdict.country_label})"
    return f"a destination of unknown location ({verdict.reason or 'no answer'})"
