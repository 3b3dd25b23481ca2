"""HL7 v2 refusals: an ACK with MSA-1 = AR (or AE/CR for enhanced-mode senders), MSA-2 = the
sender's MSH-10 and an ERR segment with the reason, so an interface engine stops retrying and
shows an operator why. Answered in the sender's version, to the sender's application."""

from __future__ import annotations

import functools
import re
import time

from gateway.model import Inspection

ACK_SENDER = "PHI-GATEWAY"
ACK_CONTENT_TYPE = "x-application/hl7-v2+er7"

# hl7apy builds each ACK shape once per HL7 version; requests only fill in the placeholders
# (hl7apy costs ~8 ms per message, which the block path of a flood cannot afford).
_ACK_VERSIONS = {"2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1"}
_VERSION = re.compile(r"^2\.[1-8](\.[0-9])?$")
_MAX_ECHO = 200
_PH = {
    name: f"ZZ{name}ZZ"
    for name in (
        "SAPP",
        "SFAC",
        "RAPP",
        "RFAC",
        "TIME",
        "TYPE",
        "MSGID",
        "CODE",
        "CTRL",
        "TEXT",
        "VER",
    )
}
_PLACEHOLDER = re.compile("|".join(_PH.values()))


def hl7_escape(value: str) -> str:
    """Escape a value for the standard delimiters |^~\\& (escape character first)."""
    return (
        value.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("~", "\\R\\")
        .replace("&", "\\T\\")
        .replace("\r", " ")
        .replace("\n", " ")
    )


@functools.lru_cache(maxsize=16)
def _ack_template(version: str) -> str:
    from hl7apy.core import Message  # imported lazily: only refusals need it

    msg = Message("ACK", version=version)
    msh = msg.msh
    msh.msh_3 = _PH["SAPP"]
    msh.msh_4 = _PH["SFAC"]
    msh.msh_5 = _PH["RAPP"]
    msh.msh_6 = _PH["RFAC"]
    msh.msh_7 = _PH["TIME"]
    msh.msh_9 = _PH["TYPE"]
    msh.msh_10 = _PH["MSGID"]
    msh.msh_11 = "P"
    msh.msh_12 = _PH["VER"]
    msg.msa.msa_1 = _PH["CODE"]
    msg.msa.msa_2 = _PH["CTRL"]
    msg.msa.msa_3 = _PH["TEXT"]
    err = msg.add_segment("ERR")
    if version in ("2.5", "2.5.1"):
        err.err_3 = "207^Application internal error^HL70357"
        err.err_4 = "E"
        err.err_8 = _PH["TEXT"]
    else:
        err.err_1 = "^^^207&" + _PH["TEXT"] + "&HL70357"
    er7: str = msg.to_er7()
    return er7


def warm_up() -> None:
    """Build the common ACK shape at start-up so the first refusal is not slow."""
    _ack_template("2.5")


def hl7_reject_ack(
    inspection: Inspection, text: str, incident_id: str, ack_code: str = "AR"
) -> str:
    """A refusing ACK in the sender's version: MSA-1 ``ack_code`` (AR, or AE/CR for
    enhanced-mode senders), MSA-2 their MSH-10, an ERR segment with the reason."""
    # Answer in the sender's version; build the shape from the closest one hl7apy gets right.
    reply = inspection.reply
    sent_version = reply.get("version", "")
    version = sent_version if _VERSION.match(sent_version) else "2.5"
    template_version = version if version in _ACK_VERSIONS else "2.5"
    sending_app = reply.get("sending_application", "")
    sending_fac = reply.get("sending_facility", "")
    receiving_app = reply.get("receiving_application", "")
    receiving_fac = reply.get("receiving_facility", "")
    trigger = inspection.message_type.split("^")[1] if "^" in inspection.message_type else ""
    values = {
        # The ACK goes back the other way: our receiver fields are their sender fields.
        "SAPP": receiving_app or ACK_SENDER,
        "SFAC": receiving_fac,
        "RAPP": sending_app,
        "RFAC": sending_fac,
        "TIME": time.strftime("%Y%m%d%H%M%S", time.gmtime()),
        "TYPE": "ACK^" + trigger if trigger else "ACK",
        "MSGID": incident_id,
        "CODE": ack_code,
        "CTRL": reply.get("control_id", ""),
        "TEXT": text,
        "VER": version,
    }
    # One pass, so a value that happens to contain a placeholder is never substituted again.
    # Echoed header values are capped: they come from the sender's payload.
    escaped = {
        _PH[name]: value if name in ("TYPE", "CODE") else hl7_escape(value[:_MAX_ECHO])
        for name, value in values.items()
    }
    er7 = _PLACEHOLDER.sub(lambda m: escaped[m.group(0)], _ack_template(template_version))
    return er7 + "\r"
