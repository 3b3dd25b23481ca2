from typing import Any

from gateway.config import GatewayConfig, parse_config
from gateway.formats.fhir import FHIR_JSON
from gateway.formats.hl7v2 import HL7V2
from gateway.model import Action, Category, Destination, Finding, Format, Inspection, Jurisdiction
from gateway.model import Location as L
from gateway.policy import decide, needs_inspection

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
