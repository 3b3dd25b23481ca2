"""FHIR (JSON / NDJSON) redaction to Safe Harbor; output stays a valid resource.

- Patient, RelatedPerson, Person: name, telecom, photo, contact and extensions removed; address
  keeps state, country and ZIP3; birthDate keeps the year (nothing at 90 or over);
  identifiers become keyed pseudonyms (SSNs are removed).
- Every resource: ``id``, Bundle ``fullUrl`` and the id part of every reference become keyed
  pseudonyms (the same everywhere, so references inside a Bundle still resolve);
  ``Reference.display``, narrative ``text``, ``note`` (Annotation), attachment data/url/title
  are removed; date/dateTime/Period values keep the year; instants become YYYY-01-01T00:00:00Z
  (they must stay full instants to be valid); identifier values become pseudonyms.
- Changed resources are labelled in ``meta.security`` (v3 ObservationValue REDACTED, and
  PSEUDED when pseudonyms were used).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gateway.inspect.fhir import PERSON_TYPES, as_list
from gateway.model import Category
from gateway.redact.safe_harbor import DatePolicy, Pseudonymizer, zip3
from gateway.redact.text import ContextScrubber

C = Category
SECURITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_REFERENCE = re.compile(
    r"^(?P<base>(?:.*/)?)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[^/]+)(?P<rest>/_history/.*)?$"
)
_SSN_SYSTEMS = ("http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1")
_PERSON_REFERENCE = re.compile(r"(?:^|/)(?:Patient|RelatedPerson|Person)[/?]")
# Plain strings that are identifiers (Coverage.subscriberId, Device.serialNumber, ...).
_IDENTIFIER_STRINGS = {
    "subscriberId": C.HEALTH_PLAN_ID,
    "serialNumber": C.DEVICE_ID,
    "distinctIdentifier": C.DEVICE_ID,
    "lotNumber": C.DEVICE_ID,
}
# Values of these types identify a person wherever they appear (Parameters, Observations).
_DROP_VALUES = frozenset({"valueHumanName", "valueContactPoint"})
_IDENTIFIER_KEYS = frozenset({"identifier", "requisition"})


_AGE_UNITS = frozenset({"a", "yr", "yrs", "year", "years"})


def _is_old_age(node: dict[str, Any]) -> bool:
    """An Age (or a Quantity in years) of 90 or more."""
    value = _number(node.get("value"))
    if value is None or value < 90:
        return False
    unit = str(node.get("code") or node.get("unit") or "").lower()
    return unit in _AGE_UNITS


def _number(value: Any) -> float | None:
    """A JSON number, or the string form FHIR XML carries."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_identifier_key(key: str) -> bool:
    """identifier, masterIdentifier, accessionIdentifier, groupIdentifier, requisition..."""
    return key in _IDENTIFIER_KEYS or key.endswith("Identifier")


_PERSON_DROP = ("name", "telecom", "photo", "contact", "extension", "modifierExtension")
_DROP_EVERYWHERE = ("text", "note")
_ATTACHMENT_DROP = ("data", "url", "title", "hash")
_ATTACHMENT_HINTS = frozenset({"contentType", "data", "size", "hash", "title"})
# Every key _element has a rule for (besides *Identifier): the rest take the fast path.
_ELEMENT_RULE_KEYS = frozenset(
    {
        "display",
        "id",
        "reference",
        "fullUrl",
        "location",
        "extension",
        "modifierExtension",
        "valueAddress",
        "url",
        "link",
        *_ATTACHMENT_DROP,
        *_DROP_EVERYWHERE,
        *_DROP_VALUES,
        *_IDENTIFIER_KEYS,
    }
)
_INSTANT_KEYS = frozenset({"issued", "lastUpdated", "timestamp", "recorded", "instant"})
_IDENTIFYING_EXTENSION_VALUES = frozenset(
    {
        "valueString",
        "valueIdentifier",
        "valueAddress",
        "valueHumanName",
        "valueContactPoint",
        "valueAttachment",
        "valueBase64Binary",
        "valueUri",
        "valueUrl",
        "valueDate",
        "valueDateTime",
        "valueInstant",
        "valueReference",
        "valueMarkdown",
    }
)


class FhirRedactionError(ValueError):
    """The document cannot be redacted safely (the reason never quotes the content)."""


@dataclass
class FhirRedaction:
    resources: list[Any]
    counts: Counter[str] = field(default_factory=Counter)
    locations: set[str] = field(default_factory=set)
    originals: set[str] = field(default_factory=set)


@dataclass
class FhirOptions:
    pseudonymizer: Pseudonymizer
    dates: DatePolicy
    pseudonymize_ids: bool = True
    keep: frozenset[str] = frozenset()  # e.g. "Patient.address" where a contract allows it


class FhirRedactor:
    def __init__(self, options: FhirOptions) -> None:
        self.options = options
        # Per redaction: a Bundle names the same few resources hundreds of times (every
        # Observation references its Patient and Encounter), and each pseudonym is an HMAC.
        self._pseudonyms: dict[tuple[str, str], str] = {}
        self._uuids: dict[str, str] = {}

    def _pseudonym(self, kind: str, value: str) -> str:
        key = (kind, value)
        known = self._pseudonyms.get(key)
        if known is None:
            known = self._pseudonyms[key] = self.options.pseudonymizer.pseudonym(kind, value)
        return known

    def _uuid(self, value: str) -> str:
        known = self._uuids.get(value)
        if known is None:
            known = self._uuids[value] = self.options.pseudonymizer.uuid(value)
        return known

    def redact(self, documents: list[Any]) -> FhirRedaction:
        self._pseudonyms.clear()  # nothing of one message is kept for the next
        self._uuids.clear()
        result = FhirRedaction(resources=[])
        for document in documents:
            result.resources.append(self._value(document, "", result, None))
        # Whatever an element kept, the document's own identifiers and SSN/phone/e-mail shapes
        # are scrubbed from every free string (a practitioner who shares the patient's name,
        # an MRN quoted in a display or a search URL).
        scrubber = ContextScrubber()
        for value in result.originals:
            scrubber.add_address_line(value)  # = add(), plus street spellings for street lines
        result.resources = _scrub_document(result.resources, scrubber)
        return result

    # -- walking --------------------------------------------------------------------------------
    def _value(self, node: Any, key: str, result: FhirRedaction, rtype: str | None) -> Any:
        if isinstance(node, list):
            return [self._value(item, key, result, rtype) for item in node]
        if isinstance(node, dict):
            if isinstance(node.get("resourceType"), str):  # is_resource, inlined: hot
                return self._resource(node, result)
            return self._element(node, result, rtype or "?")
        if isinstance(node, str):
            return self._string(node, key, result, rtype or "?")
        return node

    def _resource(self, res: dict[str, Any], result: FhirRedaction) -> dict[str, Any]:
        rtype = str(res["resourceType"])
        before = sum(result.counts.values())
        out: dict[str, Any] = {}
        for key, value in res.items():
            path = f"{rtype}.{key}"
            if path in self.options.keep:
                out[key] = value
                continue
            if key == "id" and isinstance(value, str):
                out[key] = self._pseudonym_id(value, path, result)
                continue
            if key == "data" and isinstance(value, str):  # Binary.data: an opaque document
                self._note(result, path, C.OPAQUE_CONTENT, None)
                continue
            if key == "link" and rtype == "Bundle":  # search URLs: family=...&birthdate=...
                self._note(result, path, C.OTHER_ID, None)
                continue
            if rtype in PERSON_TYPES and key in _PERSON_DROP:
                self._note(result, path, _PERSON_CATEGORY.get(key, C.OTHER_ID), value)
                continue
            if key in _DROP_EVERYWHERE:
                self._note(result, path, C.OTHER_ID, None)
                continue
            if rtype in PERSON_TYPES and key == "address":
                out[key] = [self._address(a, path, result) for a in as_list(value)]
                continue
            if rtype in PERSON_TYPES and key == "birthDate" and isinstance(value, str):
                year = self.options.dates.birth_year(value)
                self._note(result, path, C.DATE, value)
                if year:
                    out[key] = year
                continue
            if _is_identifier_key(key):
                kept = self._identifier_element(value, path, result)
                if kept is not None:
                    out[key] = kept
                continue
            if key in _IDENTIFIER_STRINGS and isinstance(value, str):
                self._note(result, path, _IDENTIFIER_STRINGS[key], value)
                if self.options.pseudonymize_ids:
                    out[key] = self._pseudonym(key, value)
                continue
            out[key] = self._value(value, key, result, rtype)
        if sum(result.counts.values()) > before:
            _label(out, pseudonymized=self.options.pseudonymize_ids)
        return out

    def _element(self, node: dict[str, Any], result: FhirRedaction, rtype: str) -> Any:
        if "value" in node and _is_old_age(node):
            # Safe Harbor: ages over 89 are one category, "90 or older".
            self._note(result, f"{rtype}.age", C.DATE, None)
            return {**node, "value": 90, "comparator": ">="}
        out: dict[str, Any] = {}
        coding = "system" in node or "code" in node
        is_attachment = not _ATTACHMENT_HINTS.isdisjoint(node)
        for key, value in node.items():
            if key not in _ELEMENT_RULE_KEYS and not key.endswith("Identifier"):
                # No rule names this key (most keys): redact the value by its own shape.
                if type(value) is str:
                    # Inlined _value for the commonest case; a string never redacts to empty.
                    out[key] = (  # only a date or an instant can change (see _string)
                        self._string(value, key, result, rtype) if value[:1].isdigit() else value
                    )
                    continue
                redacted_value = self._value(value, key, result, rtype)
                if redacted_value in ({}, []) and value not in ({}, []):
                    continue  # emptied by redaction (e.g. _birthDate): leave the element out
                out[key] = redacted_value
                continue
            path = f"{rtype}.{key}"
            if key == "display" and not coding:
                # A Reference's display names what it points at (a Coding's display is a term).
                reference = str(node.get("reference", ""))
                person = (
                    not reference
                    or _PERSON_REFERENCE.search(reference)
                    or reference.startswith("urn:")
                )
                self._note(result, path, C.NAME, value if person else None)
                continue
            if key == "id" and isinstance(value, str):  # element ids can embed anything
                out[key] = self._pseudonym("fhir-element-id", value).lower()
                continue
            if key in ("reference", "fullUrl", "location") and isinstance(value, str):
                out[key] = self._reference(value, path, result)
                continue
            if (key == "data" and isinstance(value, str)) or (
                is_attachment and key in _ATTACHMENT_DROP
            ):
                self._note(result, path, C.OPAQUE_CONTENT, None)
                continue
            if key in ("extension", "modifierExtension"):
                kept = [e for e in as_list(value) if not _identifying_extension(e)]
                if len(kept) != len(as_list(value)):
                    self._note(result, path, C.OTHER_ID, None)
                if kept:
                    out[key] = [self._value(e, key, result, rtype) for e in kept]
                continue
            if (
                key in _DROP_EVERYWHERE
                or key in _DROP_VALUES
                or (key == "link" and rtype == "Bundle")
            ):
                # Bundle.link holds search URLs (family=...&birthdate=...).
                self._note(result, path, C.OTHER_ID, value if key in _DROP_VALUES else None)
                continue
            if key == "valueAddress":
                out[key] = self._address(value, path, result)
                continue
            if _is_identifier_key(key):
                kept = self._identifier_element(value, path, result)
                if kept is not None:
                    out[key] = kept
                continue
            if key == "url" and "method" in node and isinstance(value, str):
                # Bundle.entry.request.url ("Patient/123", "Patient?identifier=..."): an id.
                out[key] = (
                    self._reference(value, path, result) if "/" in value or "?" in value else value
                )
                continue
            redacted_value = self._value(value, key, result, rtype)
            if redacted_value in ({}, []) and value not in ({}, []):
                continue  # emptied by redaction (e.g. _birthDate): leave the element out
            out[key] = redacted_value
        return out

    def _string(self, value: str, key: str, result: FhirRedaction, rtype: str) -> str:
        if not value[:1].isdigit():
            # Every date and instant starts with a digit (isdigit() accepts all that \d does).
            return value
        if key in _INSTANT_KEYS and _DATETIME.match(value):
            year = self.options.dates.year_of(value)
            self._note(result, f"{rtype}.{key}", C.DATE, None)
            return f"{year}-01-01T00:00:00Z"
        if _DATE.match(value) or _DATETIME.match(value):
            new = self.options.dates.generalize(value)
            if new != value:
                self._note(result, f"{rtype}.{key}", C.DATE, None)
            return new or value[:4]
        return value

    # -- rules ----------------------------------------------------------------------------------
    def _pseudonym_id(self, value: str, path: str, result: FhirRedaction) -> str:
        # Raw ids are not remembered for the output search: "example" or "1" would match
        # unrelated text. Their pseudonyms replace them everywhere.
        self._note(result, path, C.OTHER_ID, None)
        return self._pseudonym("fhir-id", value).lower()[:64]

    def _reference(self, ref: str, path: str, result: FhirRedaction) -> str:
        if ref.startswith("#"):
            # Contained resources: their ids are pseudonymised the same way.
            return "#" + self._pseudonym("fhir-id", ref[1:]).lower()[:64] if len(ref) > 1 else ref
        if ref.startswith("urn:uuid:"):
            self._note(result, path, C.OTHER_ID, None)
            return "urn:uuid:" + self._uuid(ref[9:])
        match = None if "?" in ref else _REFERENCE.match(ref)
        if match is None:
            # Conditional or opaque references may carry search values: drop their content.
            self._note(result, path, C.OTHER_ID, None)
            return self._pseudonym("fhir-ref", ref).lower()
        self._note(result, path, C.OTHER_ID, None)
        rid = self._pseudonym("fhir-id", match["id"]).lower()[:64]
        return f"{match['base']}{match['type']}/{rid}"

    def _identifier_element(self, value: Any, path: str, result: FhirRedaction) -> Any:
        """An Identifier (0..1) or a list of them, redacted, in the same shape; None if empty."""
        redacted = self._identifiers(value, path, result)
        if not redacted:
            return None
        return redacted[0] if isinstance(value, dict) else redacted

    def _identifiers(self, value: Any, path: str, result: FhirRedaction) -> list[Any]:
        out = []
        for ident in as_list(value):
            if not isinstance(ident, dict):
                continue
            system = str(ident.get("system", ""))
            original = ident.get("value")
            self._note(result, path, C.SSN if system in _SSN_SYSTEMS else C.MRN, original)
            if system in _SSN_SYSTEMS or not self.options.pseudonymize_ids:
                continue
            kept = {k: v for k, v in ident.items() if k in ("use", "type", "system")}
            if isinstance(original, str):
                kept["value"] = self._pseudonym(system, original)
            kept.pop("assigner", None)
            out.append(kept)
        return out

    def _address(self, address: Any, path: str, result: FhirRedaction) -> dict[str, Any]:
        self._note(result, path, C.GEOGRAPHY, None)
        if not isinstance(address, dict):
            return {}
        for key in ("line", "city", "district", "text"):
            for item in as_list(address.get(key)):
                if isinstance(item, str):
                    result.originals.add(item)
        kept = {k: address[k] for k in ("use", "type", "state", "country") if k in address}
        if isinstance(address.get("postalCode"), str):
            kept["postalCode"] = zip3(address["postalCode"])
        return kept

    @staticmethod
    def _note(result: FhirRedaction, path: str, category: Category, original: Any) -> None:
        result.counts[category.value] += 1
        result.locations.add(path)
        _collect(original, result.originals)


_PERSON_CATEGORY = {"name": C.NAME, "telecom": C.PHONE, "photo": C.PHOTO, "contact": C.NAME}


# Keys whose string values identify a person inside removed names, contacts and telecoms.
_IDENTIFYING_KEYS = frozenset({"family", "given", "text", "line", "city", "district", "value"})
# Keys never scrubbed or searched: coded, structural, or already pseudonymised.
NOT_FREE_TEXT = frozenset(
    {
        "system",
        "url",
        "reference",
        "fullUrl",
        "resourceType",
        "id",
        "code",
        "contentType",
        "status",
        "use",
        "type",
        "method",
    }
)


def _collect(value: Any, into: set[str]) -> None:
    """Remember removed values so every other string can be scrubbed and searched for them."""
    if isinstance(value, str):
        if len(value) >= 3:
            into.add(value)
    elif isinstance(value, list):
        for item in value:
            _collect(item, into)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in _IDENTIFYING_KEYS:
                _collect(item, into)


def _scrub_document(resources: list[Any], scrubber: ContextScrubber) -> list[Any]:
    """Every free string scrubbed. The document's text is searched once for which values
    occur at all; each distinct string is scrubbed once; containers are copied only on the
    way to a string that changed."""
    strings: list[str] = []
    _collect_free(resources, "", strings)
    present = scrubber.worth_scrubbing("\n".join(strings))
    if present is None:
        return resources
    changes: dict[str, str] = {}
    for text in set(strings):
        scrubbed = scrubber.scrub(text, present)
        if scrubbed != text:
            changes[text] = scrubbed
    if not changes:
        return resources
    return [_replace_strings(r, changes, "") for r in resources]


def _collect_free(node: Any, key: str, into: list[str]) -> None:
    """Every string a reader sees as text (what the scrub searches), in document order."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str):
                if k not in NOT_FREE_TEXT:
                    into.append(v)
            elif isinstance(v, dict | list):
                _collect_free(v, k, into)
    elif isinstance(node, list):
        for v in node:
            if isinstance(v, str):
                if key not in NOT_FREE_TEXT:
                    into.append(v)
            elif isinstance(v, dict | list):
                _collect_free(v, key, into)
    elif isinstance(node, str) and key not in NOT_FREE_TEXT:
        into.append(node)


def _replace_strings(node: Any, changes: dict[str, str], key: str) -> Any:
    """``node`` with its free strings replaced per ``changes``; unchanged parts shared.
    Strings are looked up in place, not by a call each: this walk visits every node."""
    if isinstance(node, str):
        return node if key in NOT_FREE_TEXT else changes.get(node, node)
    if isinstance(node, dict):
        copy: dict[str, Any] | None = None
        for k, v in node.items():
            if type(v) is str:
                if k in NOT_FREE_TEXT:
                    continue
                new = changes.get(v, v)
            elif isinstance(v, dict | list):
                new = _replace_strings(v, changes, k)
            else:
                new = _replace_strings(v, changes, k) if isinstance(v, str) else v
            if new is not v:
                if copy is None:
                    copy = dict(node)
                copy[k] = new
        return node if copy is None else copy
    if isinstance(node, list):
        replaced = [_replace_strings(v, changes, key) for v in node]
        if any(new is not old for new, old in zip(replaced, node, strict=True)):
            return replaced
    return node


def _identifying_extension(extension: Any) -> bool:
    if not isinstance(extension, dict):
        return True
    if any(key in _IDENTIFYING_EXTENSION_VALUES for key in extension):
        return True
    return any(_identifying_extension(e) for e in as_list(extension.get("extension")))


def _label(resource: dict[str, Any], pseudonymized: bool) -> None:
    meta = dict(resource.get("meta") or {})
    meta.pop("lastUpdated", None)
    security = [s for s in as_list(meta.get("security")) if isinstance(s, dict)]
    codes = {s.get("code") for s in security}
    wanted = ["REDACTED"] + (["PSEUDED"] if pseudonymized else [])
    for code in wanted:
        if code not in codes:
            security.append({"system": SECURITY_SYSTEM, "code": code})
    meta["security"] = security
    resource["meta"] = meta
