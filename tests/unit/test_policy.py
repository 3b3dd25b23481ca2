from dataclasses import replace
from typing import Any

from gateway.config import GatewayConfig, parse_config
from gateway.formats.fhir import FHIR_JSON
from gateway.formats.hl7v2 import HL7V2
from gateway.model import Action, Category, Destination, Finding, Format, Inspection, Jurisdiction
from gateway.model import Location as L
from gateway.policy import decide, needs_inspection, relay_tls

PHI = Inspection(HL7V2, findings=(Finding(Category.SSN, "PID-19"),), contains_phi=True)
CLEAN = Inspection(FHIR_JSON)
BROKEN = Inspection(Format.BINARY, error="unknown content-encoding")


def where(
    *places: tuple[str, L, str | None], host: str = "dest.example", port: int = 443
) -> Destination:
    return Destination(host, port, tuple(Jurisdiction(ip, loc, cc) for ip, loc, cc in places))


HOME = where(("198.51.100.1", L.DOMESTIC, "US"))
ABROAD = where(("203.0.113.1", L.FOREIGN, "IN"))
NOWHERE = where(("203.0.113.9", L.UNKNOWN, None))
MIXED = where(("198.51.100.1", L.DOMESTIC, "US"), ("203.0.113.1", L.FOREIGN, "IN"))


def config(**policy: Any) -> GatewayConfig:
    return parse_config({"policy": policy})


def test_domestic_is_forwarded_without_inspection() -> None:
    assert not needs_inspection(HOME, config())
    verdict = decide(HOME, PHI, config())
    assert (verdict.action, verdict.rule, verdict.record) == (Action.ALLOW, "domestic", False)


def test_foreign_phi_is_blocked_and_recorded() -> None:
    verdict = decide(ABROAD, PHI, config())
    assert (verdict.action, verdict.rule, verdict.enforced, verdict.record) == (
        Action.BLOCK,
        "foreign-phi",
        True,
        True,
    )
    assert "IN" in verdict.reason


def test_foreign_without_phi_is_forwarded() -> None:
    assert decide(ABROAD, CLEAN, config()).action is Action.ALLOW


def test_any_foreign_address_makes_the_destination_foreign() -> None:
    assert needs_inspection(MIXED, config())
    assert decide(MIXED, PHI, config()).blocks


def test_unknown_is_foreign_by_default_and_configurable() -> None:
    assert decide(NOWHERE, PHI, config()).blocks
    lenient = parse_config({"geo": {"unknown": "domestic"}})
    assert decide(NOWHERE, PHI, lenient).action is Action.ALLOW
    assert decide(where(), PHI, config()).blocks  # did not resolve at all


def test_unreadable_payload_fails_closed_abroad_only() -> None:
    verdict = decide(ABROAD, BROKEN, config())
    assert (verdict.action, verdict.rule) == (Action.BLOCK, "uninspectable")
    assert decide(HOME, BROKEN, config()).action is Action.ALLOW


def test_monitor_mode_records_but_does_not_enforce() -> None:
    verdict = decide(ABROAD, PHI, config(mode="monitor"))
    assert verdict.action is Action.BLOCK
    assert not verdict.enforced
    assert not verdict.blocks
    assert verdict.record


def test_allow_list_forwards_and_records_phi() -> None:
    policy = config(allow_destinations=[{"host": "*.example", "reason": "BAA 7"}])
    verdict = decide(ABROAD, PHI, policy)
    assert (verdict.action, verdict.rule, verdict.record) == (Action.ALLOW, "allow-list", True)
    assert "BAA 7" in verdict.reason
    assert not decide(ABROAD, CLEAN, policy).record


def test_deny_list_blocks_everything() -> None:
    policy = config(deny_destinations=[{"cidr": "198.51.100.0/24", "reason": "ended"}])
    assert needs_inspection(HOME, policy)
    verdict = decide(HOME, CLEAN, policy)
    assert (verdict.action, verdict.rule, verdict.blocks) == (Action.BLOCK, "deny-list", True)


def test_deny_beats_allow() -> None:
    policy = config(
        deny_destinations=[{"host": "dest.example", "reason": "no"}],
        allow_destinations=[{"host": "dest.example", "reason": "yes"}],
    )
    assert decide(ABROAD, CLEAN, policy).rule == "deny-list"


# -- TLS relayed encrypted at the ClientHello (issue 19) --------------------------------------
def relaying(**sections: Any) -> GatewayConfig:
    return parse_config(sections)


RULE = {"host": "dest.example", "reason": "listed"}
HOME_NET = {"cidr": "198.51.100.0/24", "reason": "listed"}
ANYCAST = where(("192.0.2.1", L.UNKNOWN, None))
HOME_TWICE = where(("198.51.100.1", L.DOMESTIC, "US"), ("192.0.2.7", L.DOMESTIC, "US"))


def _anycast(destination: Destination) -> Destination:
    (only,) = destination.addresses
    return Destination(destination.host, destination.port, (replace(only, reason="anycast"),))


def test_domestic_tls_that_no_list_names_is_relayed() -> None:
    assert relay_tls(HOME, "dest.example", relaying()) == "domestic"
    assert relay_tls(HOME, None, relaying()) == "domestic"  # no SNI: the CONNECT name only
    assert relay_tls(HOME, "DEST.example.", relaying()) == "domestic"  # same name


def test_tls_abroad_unknown_anycast_mixed_or_unresolved_is_decrypted() -> None:
    for destination in (ABROAD, NOWHERE, MIXED, _anycast(NOWHERE), where(host="dest.example")):
        assert relay_tls(destination, "dest.example", relaying()) is None, destination


def test_unknown_and_anycast_follow_the_geo_settings() -> None:
    assert relay_tls(NOWHERE, None, relaying(geo={"unknown": "domestic"})) == "domestic"
    anycast = _anycast(NOWHERE)
    assert relay_tls(anycast, None, relaying(geo={"unknown": "domestic"})) is None
    assert relay_tls(anycast, None, relaying(geo={"anycast": "domestic"})) == "domestic"


def test_every_list_keeps_domestic_tls_decrypted() -> None:
    allow_redact = {**RULE, "action": "redact"}
    for sections in (
        {"policy": {"deny_destinations": [RULE]}},
        {"policy": {"allow_destinations": [RULE]}},
        {"policy": {"allow_destinations": [allow_redact]}},
        {"proxy": {"inspect_domestic": [RULE]}},
        {"proxy": {"tls_passthrough": [RULE]}},
        {"proxy": {"inspect_domestic": [HOME_NET]}},
        {"policy": {"deny_destinations": [{**HOME_NET, "port": 443}]}},
    ):
        assert relay_tls(HOME, "dest.example", relaying(**sections)) is None, sections
    other_port = {"policy": {"deny_destinations": [{**RULE, "port": 8443}]}}
    assert relay_tls(HOME, "dest.example", relaying(**other_port)) == "domestic"


def test_a_cidr_rule_over_one_of_the_addresses_is_enough() -> None:
    # decide() wants every address inside a CIDR rule; a relayed connection is not judged
    # again, so one listed address already keeps it decrypted.
    listed = relaying(policy={"deny_destinations": [HOME_NET]})
    assert relay_tls(HOME_TWICE, None, listed) is None
    assert relay_tls(HOME_TWICE, None, relaying()) == "domestic"


def test_the_sni_is_matched_too_and_a_different_sni_is_decrypted() -> None:
    sni_listed = relaying(
        policy={"deny_destinations": [{"host": "*.vendor.example", "reason": "r"}]}
    )
    at_address = where(("198.51.100.1", L.DOMESTIC, "US"), host="198.51.100.1")
    # Transparent mode (or CONNECT to an address): the SNI is the only name, matched by lists.
    assert relay_tls(at_address, "api.vendor.example", sni_listed) is None
    assert relay_tls(at_address, "api.vendor.example", relaying()) == "domestic"
    # A CONNECT name with another SNI (domain fronting, a confused client): decrypted.
    assert relay_tls(HOME, "api.vendor.example", relaying()) is None


def test_the_switch_turns_relaying_off() -> None:
    assert relay_tls(HOME, "dest.example", relaying(proxy={"relay_domestic_tls": False})) is None
