"""One audit row as the SIEM reads it: CEF, OCSF (Data Security Finding, class 2006; the
trail's own events as Base Event, class 0), Splunk HEC, or plain JSON.

Every format is built from the same public view of the row (``public``): the audit row's
fields with its JSON columns read back, and a workflow comment replaced by the fact that
there is one (comments are free text written by staff: kept in the trail, never streamed).
The mapping tables are in docs/siem.md.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

import orjson

from gateway.audit.event import event_timestamp
from gateway.model import split_client

OCSF_VERSION = "1.8.0"
PRODUCT = "PHI egress gateway"
VENDOR = "phi-gateway"
_JSON_COLUMNS = ("geo_evidence", "categories", "locations", "redaction", "geo_databases", "detail")
_SEVERITY_NAMES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High"}


def _product_version() -> str:
    try:
        return importlib.metadata.version("phi-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "0"


PRODUCT_VERSION = _product_version()


def public(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its JSON columns parsed, chain columns grouped, and no comment text."""
    view: dict[str, Any] = {}
    for key, value in row.items():
        if key in _JSON_COLUMNS:
            view[key] = _parsed(value)
        elif key not in ("seq", "chain_seq", "prev_hash", "hash"):
            view[key] = value
    detail = view.get("detail")
    if isinstance(detail, dict) and "comment" in detail:
        view["detail"] = {k: v for k, v in detail.items() if k != "comment"} | {
            "comment": bool(detail["comment"])
        }
    view["chain"] = {
        "instance_id": row.get("instance_id", ""),
        "seq": row.get("chain_seq"),
        "hash": row.get("hash", ""),
    }
    return view


def _parsed(value: object) -> object:
    if not isinstance(value, str) or not value:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def epoch_ms(iso: str) -> int:
    """An audit time (ISO 8601 UTC, "Z") in milliseconds since the epoch; 0 if unreadable."""
    return int(event_timestamp(iso) * 1000)


def severity(row: dict[str, Any]) -> int:
    """OCSF severity_id: PHI that left (monitor) or was stopped is High; a redacted transfer
    Medium; an allow-listed PHI transfer Low; the trail's own events Informational."""
    if row.get("kind", "decision") != "decision":
        return 1
    return {"block": 4, "monitor": 4, "redact": 3, "allow": 2}.get(str(row.get("action")), 3)


def syslog_severity(row: dict[str, Any]) -> int:
    """RFC 5424 severity: warning (4), notice (5) or informational (6)."""
    return {4: 4, 3: 5, 2: 5}.get(severity(row), 6)


def event_id(row: dict[str, Any]) -> str:
    """What a SIEM de-duplicates by: the event's own id (unique in the trail)."""
    return str(row.get("incident_id", ""))


def incident_of(view: dict[str, Any]) -> str:
    """The incident an event is about: itself, or the one a workflow change names."""
    detail = view.get("detail")
    if view.get("kind") == "workflow" and isinstance(detail, dict):
        return str(detail.get("incident_id", ""))
    return str(view.get("incident_id", ""))


# -- CEF -----------------------------------------------------------------------------------------
def _cef_header(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _cef_value(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def _cef_categories(categories: object) -> str:
    if not isinstance(categories, dict):
        return ""
    return ",".join(f"{k}:{v}" for k, v in sorted(categories.items()))


_CEF_SEVERITY = {4: 8, 3: 6, 2: 3, 1: 1}


def cef(row: dict[str, Any]) -> str:
    """ArcSight Common Event Format, version 0 (docs/siem.md, "CEF")."""
    view = public(row)
    kind = str(view.get("kind") or "decision")
    action = str(view.get("action", ""))
    rule = str(view.get("rule", ""))
    signature = f"{kind}:{action}:{rule}" if rule else f"{kind}:{action}"
    name = _cef_name(view)
    header = "|".join(
        _cef_header(part)
        for part in (
            "CEF:0",
            VENDOR,
            PRODUCT,
            PRODUCT_VERSION,
            signature,
            name,
            str(_CEF_SEVERITY[severity(view)]),
        )
    )
    src, spt = split_client(str(view.get("client", "")))
    chain = view["chain"]
    fields: list[tuple[str, object]] = [
        ("rt", epoch_ms(str(view.get("time", "")))),
        ("externalId", event_id(view)),
        ("cat", kind),
        ("act", action),
        ("deviceExternalId", view.get("instance_id", "")),
        ("src", src),
        ("spt", spt),
        ("dhost", view.get("host", "")),
        ("dst", view.get("ip", "")),
        ("dpt", view.get("port") or None),
        ("app", view.get("protocol", "")),
        ("reason", view.get("reason", "")),
        ("cs1Label", "categories"),
        ("cs1", _cef_categories(view.get("categories"))),
        ("cs2Label", "rule"),
        ("cs2", rule),
        ("cs3Label", "policyVersion"),
        ("cs3", view.get("policy_version", "")),
        ("cs4Label", "incidentId"),
        ("cs4", incident_of(view)),
        ("cs5Label", "payloadFingerprint"),
        ("cs5", view.get("payload_fingerprint", "")),
        ("cs6Label", "locations"),
        ("cs6", ",".join(str(x) for x in view.get("locations") or [])),
        ("flexString1Label", "destinationCountry"),
        ("flexString1", view.get("country", "")),
        ("flexString2Label", "format"),
        ("flexString2", view.get("format", "")),
        ("cn1Label", "chainSeq"),
        ("cn1", chain["seq"]),
    ]
    workflow = _workflow(view)
    if workflow:
        fields.append(("outcome", workflow))
    extension = " ".join(
        f"{key}={_cef_value(value)}" for key, value in fields if value not in (None, "")
    )
    return f"{header}|{extension}"


def _workflow(view: dict[str, Any]) -> str:
    """A workflow change as "from->to" (no comment, no assignee's words)."""
    detail = view.get("detail")
    if view.get("kind") != "workflow" or not isinstance(detail, dict):
        return ""
    return f"{detail.get('from', '')}->{detail.get('to', '')}"


def _cef_name(view: dict[str, Any]) -> str:
    kind = view.get("kind")
    action = view.get("action")
    if kind == "decision":
        where = view.get("country") or "unknown"
        return {
            "block": f"PHI blocked to {where}",
            "monitor": f"PHI forwarded to {where} (monitor mode)",
            "redact": f"PHI redacted to {where}",
            "allow": f"PHI forwarded to {where} (allow-listed)",
        }.get(str(action), f"decision to {where}")
    if kind == "workflow":
        return f"incident {_workflow(view)}"
    return {
        "access": "admin API access",
        "expiry": "audit retention expiry",
        "entry-expiry": "policy entry expired",
        "reload": "policy reload",
    }.get(str(kind), f"{kind} event")


# -- OCSF ----------------------------------------------------------------------------------------
_OCSF_ACTION = {"block": (2, "Denied"), "monitor": (3, "Observed"), "allow": (1, "Allowed")}
_OCSF_ACTION_REDACT = (4, "Modified")
_OCSF_DISPOSITION = {
    "block": (2, "Blocked"),
    "monitor": (15, "Detected"),
    "allow": (1, "Allowed"),
    "redact": (11, "Corrected"),
}
# Workflow states (docs/siem.md): OCSF activity and finding status.
_OCSF_WORKFLOW = {
    "acknowledged": (2, 2),
    "assigned": (2, 2),
    "commented": (2, 0),
    "resolved": (3, 4),
    "false-positive": (3, 4),
    "accepted-risk": (3, 3),
}
_STATUS_NAMES = {0: "", 1: "New", 2: "In Progress", 3: "Suppressed", 4: "Resolved"}
_ACTIVITY_NAMES = {1: "Create", 2: "Update", 3: "Close", 99: "Other"}


def _metadata(view: dict[str, Any], profiles: list[str]) -> dict[str, Any]:
    chain = view["chain"]
    meta: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": {"name": PRODUCT, "vendor_name": VENDOR, "version": PRODUCT_VERSION},
        "uid": event_id(view),
        "log_name": "audit",
        "original_time": str(view.get("time", "")),
        "profiles": profiles,
    }
    if chain["seq"] is not None:
        meta["sequence"] = int(chain["seq"])
    return meta


def _endpoint(address: str, host: str = "", port: int | None = None, country: str = "") -> Any:
    ip, parsed_port = split_client(address)
    endpoint: dict[str, Any] = {}
    if host or ip:  # OCSF wants a name or a uid on every endpoint
        endpoint["name"] = host or ip
    if host:
        endpoint["hostname"] = host
    if ip:
        endpoint["ip"] = ip
    if port or parsed_port:
        endpoint["port"] = port or parsed_port
    if country:
        endpoint["location"] = {"country": country}
    return endpoint or None


def _unmapped(view: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "kind",
        "categories",
        "locations",
        "geo_evidence",
        "geo_databases",
        "format",
        "protocol",
        "message_type",
        "location",
        "error",
        "redaction",
        "payload_fingerprint",
        "run_seq",
        "instance_id",
        "chain",
        "detail",
    )
    return {k: view[k] for k in keys if view.get(k) not in (None, "", [], {})}


def ocsf(row: dict[str, Any]) -> dict[str, Any]:
    """The row as an OCSF 1.8.0 event (docs/siem.md, "OCSF")."""
    view = public(row)
    kind = view.get("kind") or "decision"
    if kind not in ("decision", "workflow"):
        return _ocsf_base(view)
    sev = severity(view)
    ms = epoch_ms(str(view.get("time", "")))
    action = str(view.get("action", ""))
    event: dict[str, Any] = {
        "class_uid": 2006,
        "class_name": "Data Security Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "severity_id": sev,
        "severity": _SEVERITY_NAMES[sev],
        "time": ms,
        "message": str(view.get("reason", "")),
        "metadata": _metadata(view, ["security_control"]),
        "finding_info": {
            "uid": incident_of(view),
            "title": _cef_name(view),
            "types": [str(view.get("rule") or kind)],
            "created_time": ms,
        },
        "unmapped": _unmapped(view),
    }
    if kind == "workflow":
        given = view.get("detail")
        detail: dict[str, Any] = given if isinstance(given, dict) else {}
        activity, status = _OCSF_WORKFLOW.get(str(detail.get("to")), (2, 0))
        if status:
            event["status_id"] = status
            event["status"] = _STATUS_NAMES[status]
    else:
        activity = 1
        categories = view.get("categories") or {}
        action_id, action_name = (
            _OCSF_ACTION_REDACT if action == "redact" else _OCSF_ACTION.get(action, (99, "Other"))
        )
        disposition_id, disposition = _OCSF_DISPOSITION.get(action, (99, "Other"))
        policy = {
            "name": str(view.get("rule", "")) or "policy",
            "uid": str(view.get("policy_version", "")) or "unknown",
            "desc": str(view.get("reason", "")),
            "is_applied": action != "monitor",
        }
        event |= {
            "action_id": action_id,
            "action": action_name,
            "disposition_id": disposition_id,
            "disposition": disposition,
            "is_alert": action in ("block", "monitor"),
            "count": sum(int(v) for v in categories.values()) if categories else 0,
            "policy": policy,
            "data_security": {
                "data_lifecycle_state_id": 2,
                "data_lifecycle_state": "Data in-Transit",
                "detection_system_id": 2,
                "detection_system": "DLP Gateway",
                "category_id": 1,
                "category": "Personal",
                "detection_pattern": "HIPAA Safe Harbor identifiers",
                "total": len(categories),
                "policy": policy,
            },
        }
        src = _endpoint(str(view.get("client", "")))
        dst = _endpoint(
            str(view.get("ip", "")),
            host=str(view.get("host", "")),
            port=int(view.get("port") or 0) or None,
            country=str(view.get("country", "")),
        )
        if src:
            event["src_endpoint"] = src
        if dst:
            event["dst_endpoint"] = dst
    event["activity_id"] = activity
    event["activity_name"] = _ACTIVITY_NAMES[activity]
    event["type_uid"] = 2006 * 100 + activity
    event["type_name"] = f"Data Security Finding: {_ACTIVITY_NAMES[activity]}"
    return event


def _ocsf_base(view: dict[str, Any]) -> dict[str, Any]:
    """The trail's own events (admin API access, retention expiry, rule expiry): no finding,
    so OCSF's Base Event (class 0, activity Other)."""
    return {
        "class_uid": 0,
        "class_name": "Base Event",
        "category_uid": 0,
        "category_name": "Uncategorized",
        "activity_id": 99,
        "activity_name": str(view.get("action") or view.get("kind")),
        "type_uid": 99,
        "type_name": "Base Event: Other",
        "severity_id": 1,
        "severity": "Informational",
        "time": epoch_ms(str(view.get("time", ""))),
        "message": str(view.get("reason", "")),
        "metadata": _metadata(view, []),
        "unmapped": _unmapped(view),
    }


# -- JSON and Splunk HEC -----------------------------------------------------------------------
def plain(row: dict[str, Any]) -> dict[str, Any]:
    """The audit row as JSON (its JSON columns as JSON, the chain columns grouped)."""
    return public(row)


def hec(row: dict[str, Any]) -> dict[str, Any]:
    """A Splunk HTTP Event Collector event (``/services/collector/event``)."""
    view = public(row)
    return {
        "time": epoch_ms(str(view.get("time", ""))) / 1000,
        "host": str(view.get("instance_id", "")),
        "source": "phi-gateway",
        "sourcetype": "phi_gateway:audit",
        "event": view,
    }


def encode(format: str) -> Callable[[dict[str, Any]], bytes]:
    """The encoder of one format: a row in, the message bytes out (no framing)."""
    if format == "cef":
        return lambda row: cef(row).encode()
    makers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "ocsf": ocsf,
        "json": plain,
        "splunk-hec": hec,
    }
    make = makers[format]
    return lambda row: orjson.dumps(make(row))
