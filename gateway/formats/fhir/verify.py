"""Before a redacted FHIR document leaves: is anything identifying left? Every check must pass
(that it still serializes is checked where it is serialized, once):

1. every person resource (Patient, RelatedPerson, Person, at any depth) holds no name,
   telecom, photo or contact, a birth date cut to the year (unless dates are shifted), an
   address with at most state, country and ZIP3, and only pseudonymous identifiers;
2. the identifier values the redactor removed occur in no string a reader sees as text;
3. no SSN, phone or e-mail shape is left (what the scrubber masks);
4. no string that reads like prose still identifies a patient to the free-text detectors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.formats.fhir.resources import NOT_FREE_TEXT, PERSON_TYPES, as_list
from gateway.phi.freetext import prose_identifies
from gateway.phi.safe_harbor import is_generalized_date, is_pseudonym, is_safe_token
from gateway.phi.scrub import has_pattern, leftover


def verify_fhir(resources: list[Any], originals: Iterable[str], shifted_dates: bool) -> str:
    """'' when the redacted resources are clean, else the reason (never a value). That they
    still serialize is checked where they are serialized (once: redactor.encode_fhir)."""
    strings: list[str] = []
    people: list[dict[str, Any]] = []
    _read(resources, "", strings, people)
    for resource in people:
        if not _person_clean(resource, shifted_dates):
            return "an identifying element survived redaction"
    text = "\n".join(strings)
    if leftover(text, originals):
        return "an identifier value survived redaction"
    if has_pattern(text):
        return "an SSN, phone or e-mail pattern survived redaction"
    # Distinct first: the same few strings recur thousands of times, their hashes are known.
    if prose_identifies(dict.fromkeys(strings)):
        return "free text still identifies a patient"
    return ""


def _read(node: Any, key: str, strings: list[str], people: list[dict[str, Any]]) -> None:
    """One walk: every string a reader sees as text (document order), every person
    resource at any depth (contained, Bundle entries, Parameters)."""
    if isinstance(node, dict):
        _read_dict(node, strings, people)
    elif isinstance(node, list):
        _read_list(node, key, strings, people)


# The exact types first (json.loads makes no others), then any subclass: ~40,000 nodes in
# a 2.7 MB Bundle, so a dict or list child costs one call, a number no call at all.
def _read_dict(node: dict[str, Any], strings: list[str], people: list[dict[str, Any]]) -> None:
    if "resourceType" in node:
        rtype = node["resourceType"]
        if isinstance(rtype, str) and rtype in PERSON_TYPES:
            people.append(node)
    for k, v in node.items():
        kind = type(v)
        if kind is str:
            if k not in NOT_FREE_TEXT:
                strings.append(v)
        elif kind is dict:
            _read_dict(v, strings, people)
        elif kind is list:
            _read_list(v, k, strings, people)
        elif kind is int or kind is float or kind is bool or v is None:
            pass
        elif isinstance(v, str):
            if k not in NOT_FREE_TEXT:
                strings.append(v)
        else:
            _read(v, k, strings, people)


def _read_list(node: list[Any], key: str, strings: list[str], people: list[dict[str, Any]]) -> None:
    free = key not in NOT_FREE_TEXT
    for v in node:
        kind = type(v)
        if kind is dict:
            _read_dict(v, strings, people)
        elif kind is str:
            if free:
                strings.append(v)
        elif kind is list:
            _read_list(v, key, strings, people)
        elif isinstance(v, str):
            if free:
                strings.append(v)
        else:
            _read(v, key, strings, people)


def _person_clean(resource: dict[str, Any], shifted_dates: bool) -> bool:
    if any(resource.get(k) for k in ("name", "telecom", "photo", "contact")):
        return False
    birth = resource.get("birthDate")
    if isinstance(birth, str) and not shifted_dates and not is_generalized_date(birth):
        return False
    for address in as_list(resource.get("address")):
        if not isinstance(address, dict) or any(
            address.get(k) for k in ("line", "city", "district", "text")
        ):
            return False
        postal = address.get("postalCode")
        if postal is not None and not (
            isinstance(postal, str) and is_safe_token(postal, address=True)
        ):
            return False
    for ident in as_list(resource.get("identifier")):
        value = ident.get("value") if isinstance(ident, dict) else None
        if value is not None and not (isinstance(value, str) and is_pseudonym(value)):
            return False
    return True
