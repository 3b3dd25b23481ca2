"""Refusals that speak X12: a 999 that rejects each functional group it was sent (IK5*R,
AK9*R), or a TA1 that rejects an interchange whose envelope could not be read. A translator
shows either to its operator and stops resending.

Neither acknowledgement has a free-text element: the incident id travels in the response's
X-PHI-Gateway-Incident header; the 999's own control numbers are numeric, as X12 wants.
What is echoed back comes from the envelope (trading partner ids, control numbers, versions),
never from a patient loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from gateway.formats.x12.envelope import Delimiters, Interchange

ACK_CONTENT_TYPE = "application/edi-x12"
# TA1-05 note code: "invalid control structure" when nothing finer applies.
_TA1_UNREADABLE = "024"


def envelope_reply(interchanges: Sequence[Interchange]) -> dict[str, str]:
    """What a refusal echoes, taken from the first interchange's envelope; each group's
    GS01/GS06/GS08 and its transaction sets ("837:0001:005010X222A1") as lists."""
    if not interchanges:
        return {}
    first = interchanges[0]
    reply: dict[str, str] = {}
    groups: list[str] = []
    sets: list[str] = []
    for segment in first.headers():
        if segment.tag == "ISA":
            for number in (5, 6, 7, 8, 9, 10, 13, 15):
                reply[f"ISA{number:02d}"] = segment.element(number).strip()
        elif segment.tag == "GS":
            if "GS02" not in reply:
                reply["GS02"], reply["GS03"] = segment.element(2), segment.element(3)
            groups.append(":".join(segment.element(n) for n in (1, 6, 8)))
            sets.append("")
        elif segment.tag == "ST":
            entry = ",".join(segment.element(n) for n in (1, 2, 3))
            if not sets:
                groups.append("::")
                sets.append("")
            sets[-1] = f"{sets[-1]};{entry}" if sets[-1] else entry
    reply["groups"] = "|".join(groups)
    reply["sets"] = "|".join(sets)
    return reply


def _control(incident_id: str) -> str:
    """Nine digits that differ per refusal (from the incident id's random part)."""
    tail = incident_id.rsplit("-", 1)[-1]
    try:
        return f"{int(tail, 16) % 1_000_000_000:09d}"
    except ValueError:
        return "000000001"


def _isa(reply: Mapping[str, str], control: str, now: dt.datetime, d: Delimiters) -> str:
    # Sender and receiver swap: the acknowledgement goes back to whoever sent the claim.
    fields = [
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        (reply.get("ISA07") or "ZZ")[:2].ljust(2),
        (reply.get("ISA08") or "PHI-GATEWAY")[:15].ljust(15),
        (reply.get("ISA05") or "ZZ")[:2].ljust(2),
        (reply.get("ISA06") or "SENDER")[:15].ljust(15),
        f"{now:%y%m%d}",
        f"{now:%H%M}",
        d.repetition,
        "00501",
        control,
        "0",
        (reply.get("ISA15") or "P")[:1],
        d.component,
    ]
    return d.element.join(fields) + d.segment


def reject_999(reply: Mapping[str, str], incident_id: str, now: dt.datetime | None = None) -> str:
    """A 999 rejecting every functional group (and each of its transaction sets)."""
    now = now or dt.datetime.now(dt.UTC)
    d = Delimiters()
    control = _control(incident_id)
    group_control = str(int(control) % 1_000_000_000 or 1)
    out = [_isa(reply, control, now, d)]
    segments: list[list[str]] = [
        [
            "GS",
            "FA",
            reply.get("GS03") or "PHI-GATEWAY",
            reply.get("GS02") or "SENDER",
            f"{now:%Y%m%d}",
            f"{now:%H%M}",
            group_control,
            "X",
            "005010X231A1",
        ]
    ]
    groups = (reply.get("groups") or "HC::").split("|")
    sets = (reply.get("sets") or "").split("|")
    for number, group in enumerate(groups, 1):
        code, group_number, version = [*group.split(":"), "", "", ""][:3]
        body: list[list[str]] = [
            ["ST", "999", f"{number:04d}", "005010X231A1"],
            ["AK1", code or "HC", group_number or "1", version or "005010X222A1"],
        ]
        members = [s for s in (sets[number - 1] if number <= len(sets) else "").split(";") if s]
        for member in members:
            set_id, set_control, reference = [*member.split(","), "", "", ""][:3]
            body.append(["AK2", set_id, set_control, *([reference] if reference else [])])
            body.append(["IK5", "R", "5"])
        count = str(len(members))
        body.append(["AK9", "R", count, count, "0"])
        body.append(["SE", str(len(body) + 1), f"{number:04d}"])
        segments += body
    segments.append(["GE", str(len(groups)), group_control])
    segments.append(["IEA", "1", control])
    out += [d.element.join(s) + d.segment for s in segments]
    return "".join(out)


def reject_ta1(reply: Mapping[str, str], incident_id: str, now: dt.datetime | None = None) -> str:
    """A TA1 rejecting an interchange whose envelope could not be read."""
    now = now or dt.datetime.now(dt.UTC)
    d = Delimiters()
    control = _control(incident_id)
    ta1 = [
        "TA1",
        (reply.get("ISA13") or "000000000")[:9].rjust(9, "0"),
        reply.get("ISA09") or f"{now:%y%m%d}",
        reply.get("ISA10") or f"{now:%H%M}",
        "R",
        _TA1_UNREADABLE,
    ]
    return (
        _isa(reply, control, now, d)
        + d.element.join(ta1)
        + d.segment
        + d.element.join(["IEA", "0", control])
        + d.segment
    )
