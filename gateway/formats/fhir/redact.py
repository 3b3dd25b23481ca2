"""FHIR (JSON / NDJSON) redaction to Safe Harbor; output stays a valid resource.

- Patient, RelatedPerson, Person: name, telecom, photo, contact and extensions removed; address
  keeps state, country and ZIP3; birthDate keeps the year (nothing at 90 or over);
  identifiers become keyed pseudonyms (SSNs are removed).
- Every resource: ``id``, Bundle ``fullUrl`` and the id part of every reference become keyed
  pseudonyms (the same everywhere, so references inside a Bundle still resolve);
  ``Reference.display``, narrative ``text``, ``note`` (Annotation), attachment url/title/hash
  are removed; attachment data (and ``Binary.data``, ``valueBase64Binary``) becomes a
  text/plain placeholder saying it was removed; date/dateTime/Period values keep the year;
  instants become YYYY-01-01T00:00:00Z (they must stay full instants to be valid);
  identifier values become pseudonyms.
- Changed resources are labelled in ``meta.security`` (v3 ObservationValue REDACTED, and
  PSEUDED when pseudonyms were used).
"""

from __future__ import annotations

import base64
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gateway.formats.fhir.resources import (
    ENCODED_KEYS,
    NOT_FREE_TEXT,
    PERSON_REFERENCE,
    PERSON_TYPES,
    SSN_SYSTEMS,
    as_list,
)
from gateway.model import Category
from gateway.phi.safe_harbor import DatePolicy, Pseudonymizer, is_old_age, zip3
from gateway.phi.scrub import ContextScrubber

C = Category
SECURITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_REFERENCE = re.compile(
    r"^(?P<base>(?:.*/)?)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[^/]+)(?P<rest>/_history/.*)?$"
)
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


def _is_old_age(node: dict[str, Any]) -> bool:
    """An Age (or a Quantity in years) of 90 or more."""
    value = _number(node.get("value"))
    if value is None:
        return False
    return is_old_age(value, str(node.get("code") or node.get("unit") or "").lower())


def _number(value: Any) -> float | None:
    """A JSON number, or the string form FHIR XML carries."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer past float's range (json reads 1e400 written out)
            return math.inf if value > 0 else -math.inf
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
# What replaces a base64 document (resources.ENCODED_KEYS) in a redacted resource.
PLACEHOLDER_TEXT = b"Attachment removed by the PHI egress gateway (HIPAA Safe Harbor)."
PLACEHOLDER_DATA = base64.b64encode(PLACEHOLDER_TEXT).decode("ascii")
PLACEHOLDER_TYPE = "text/plain"
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
        *ENCODED_KEYS,
        *_DROP_EVERYWHERE,
        *_DROP_VALUES,
        *_IDENTIFIER_KEYS,
    }
)
# Every key _resource has a rule for (besides identifiers).
_RESOURCE_RULE_KEYS = frozenset(
    {
        "id",
        "data",
        "link",
        "address",
        "birthDate",
        *_PERSON_DROP,
        *_DROP_EVERYWHERE,
        *_IDENTIFIER_STRINGS,
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


# A free string's place in the output: its container, its key or index there, the string.
_Slot = tuple[Any, Any, str]
# What _element does with a key (memoised per redaction: the same few keys recur).
_FREE, _CODED, _DISPLAY, _RULE = 0, 1, 2, 3


def _key_kind(key: str) -> int:
    if key == "display":
        return _DISPLAY
    if key in _ELEMENT_RULE_KEYS or key.endswith("Identifier"):
        return _RULE
    return _CODED if key in NOT_FREE_TEXT else _FREE


class FhirRedactor:
    def __init__(self, options: FhirOptions) -> None:
        self.options = options
        # Per redaction: a Bundle names the same few resources hundreds of times (every
        # Observation references its Patient and Encounter), and each pseudonym is an HMAC.
        self._pseudonyms: dict[tuple[str, str], str] = {}
        self._uuids: dict[str, str] = {}
        self._references: dict[str, str] = {}  # reference as sent → as rewritten
        self._kinds: dict[str, int] = {}
        self._dates: dict[str, tuple[str, bool]] = {}  # value → (redacted, changed)
        # Every free string of the output where it sits, recorded as the walk writes it: the
        # scrub then needs no second walk, and writes its changes in place.
        self._slots: list[_Slot] = []
        # What each _note counted, in order (counted once at the end; its length tells
        # whether a resource changed).
        self._noted: list[str] = []
        self._result = FhirRedaction(resources=[])
        # A Bundle's urn:uuid fullUrls and the resource type each names: the display of a
        # reference to one is a person's name only when it points at a person.
        self._urn_types: dict[str, str] = {}

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
        """The documents redacted in place (they must be trees, as json.loads makes them:
        a container reached twice would be redacted twice)."""
        self._pseudonyms.clear()  # nothing of one message is kept for the next
        self._uuids.clear()
        self._references.clear()
        self._kinds.clear()
        self._dates.clear()
        self._slots = []
        self._noted = []
        self._urn_types = _urn_types(documents)
        result = self._result = FhirRedaction(resources=[])
        resources = result.resources
        for document in documents:
            redacted = self._value(document, "", "?")
            if isinstance(redacted, str):
                self._slots.append((resources, len(resources), redacted))
            resources.append(redacted)
        result.counts.update(self._noted)
        # Whatever an element kept, the document's own identifiers and SSN/phone/e-mail shapes
        # are scrubbed from every free string (a practitioner who shares the patient's name,
        # an MRN quoted in a display or a search URL).
        scrubber = ContextScrubber()
        for value in result.originals:
            scrubber.add_address_line(value)  # = add(), plus street spellings for street lines
        _scrub_slots(self._slots, scrubber)
        self._slots = []
        self._kinds.clear()
        self._dates.clear()
        self._references.clear()
        self._urn_types = {}
        return result

    # -- walking --------------------------------------------------------------------------------
    # In place: a value the rules leave alone is not written at all, and no container is
    # copied (half the cost of a 2.7 MB Bundle was building its copy, and collecting it).
    # Keys are removed after the loop over their dict; what a rule reads of a node (its keys,
    # a Reference's reference) is read before anything in it changes.
    def _value(self, node: Any, key: str, rtype: str) -> Any:
        """Any value, redacted by its shape (``rtype``: the resource it is in, or "?")."""
        if isinstance(node, list):
            return self._list(node, key, rtype)
        if isinstance(node, dict):
            if isinstance(node.get("resourceType"), str):  # is_resource, inlined: hot
                return self._resource(node)
            return self._element(node, rtype)
        if isinstance(node, str):
            return self._string(node, key, rtype)
        return node

    def _list(self, node: list[Any], key: str, rtype: str) -> list[Any]:
        free = key not in NOT_FREE_TEXT
        slots = self._slots
        for index, item in enumerate(node):
            kind = type(item)
            if kind is dict:  # the commonest items: _value inlined
                if "resourceType" in item and isinstance(item["resourceType"], str):
                    self._resource(item)
                else:
                    self._element(item, rtype)
                continue
            if kind is str:
                text = item
                if item[:1].isdigit():  # only a date or an instant can change (see _string)
                    text = node[index] = self._string(item, key, rtype)
                if free:
                    slots.append((node, index, text))
                continue
            redacted = self._value(item, key, rtype)
            if redacted is not item:
                node[index] = redacted
            if free and isinstance(redacted, str):
                slots.append((node, index, redacted))
        return node

    def _keep(self, out: dict[str, Any], key: str, value: Any) -> None:
        """``out[key]`` is an input value the rules keep as it is: record its free strings."""
        if isinstance(value, str):
            if key not in NOT_FREE_TEXT:
                self._slots.append((out, key, value))
        else:
            self._record(value, key)

    def _record(self, node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                self._keep(node, k, v)
        elif isinstance(node, list):
            free = key not in NOT_FREE_TEXT
            for index, v in enumerate(node):
                if isinstance(v, str):
                    if free:
                        self._slots.append((node, index, v))
                else:
                    self._record(v, key)

    def _resource(self, res: dict[str, Any]) -> dict[str, Any]:
        rtype = str(res["resourceType"])
        inner = rtype or "?"  # what the elements inside name it
        before = len(self._noted)
        keep = self.options.keep
        person = rtype in PERSON_TYPES
        slots = self._slots
        dropped: list[str] = []
        placeholder = False
        for key, value in res.items():
            if keep and f"{rtype}.{key}" in keep:
                self._keep(res, key, value)
                continue
            if key not in _RESOURCE_RULE_KEYS and not _is_identifier_key(key):
                # No rule below names this key (most keys): straight to the last one.
                redacted = self._value(value, key, inner)
                if redacted is not value:
                    res[key] = redacted
                if isinstance(redacted, str) and key not in NOT_FREE_TEXT:
                    slots.append((res, key, redacted))
                continue
            if key == "id" and isinstance(value, str):
                res[key] = self._pseudonym_id(value, f"{rtype}.{key}")
                continue
            if key == "data" and isinstance(value, str):  # Binary.data: a document
                self._note(f"{rtype}.{key}", C.OPAQUE_CONTENT, None)
                res[key] = PLACEHOLDER_DATA
                placeholder = True
                continue
            if key == "link" and rtype == "Bundle":  # search URLs: family=...&birthdate=...
                self._note(f"{rtype}.{key}", C.OTHER_ID, None)
                dropped.append(key)
                continue
            if person and key in _PERSON_DROP:
                self._note(f"{rtype}.{key}", _PERSON_CATEGORY.get(key, C.OTHER_ID), value)
                dropped.append(key)
                continue
            if key in _DROP_EVERYWHERE:
                self._note(f"{rtype}.{key}", C.OTHER_ID, None)
                dropped.append(key)
                continue
            if person and key == "address":
                path = f"{rtype}.{key}"
                res[key] = [self._address(a, path) for a in as_list(value)]
                continue
            if person and key == "birthDate" and isinstance(value, str):
                year = self.options.dates.birth_year(value)
                self._note(f"{rtype}.{key}", C.DATE, value)
                if year:
                    res[key] = year
                    slots.append((res, key, year))
                else:
                    dropped.append(key)
                continue
            if _is_identifier_key(key):
                kept = self._identifier_element(value, f"{rtype}.{key}")
                if kept is not None:
                    res[key] = kept
                else:
                    dropped.append(key)
                continue
            if key in _IDENTIFIER_STRINGS and isinstance(value, str):
                self._note(f"{rtype}.{key}", _IDENTIFIER_STRINGS[key], value)
                if self.options.pseudonymize_ids:
                    pseudonym = res[key] = self._pseudonym(key, value)
                    slots.append((res, key, pseudonym))
                else:
                    dropped.append(key)
                continue
            redacted = self._value(value, key, inner)
            if redacted is not value:
                res[key] = redacted
            if isinstance(redacted, str) and key not in NOT_FREE_TEXT:
                slots.append((res, key, redacted))
        for key in dropped:
            del res[key]
        if placeholder:
            res["contentType"] = PLACEHOLDER_TYPE
        if len(self._noted) > before:
            meta = res.get("meta")
            _label(res, pseudonymized=self.options.pseudonymize_ids)
            if type(meta) is not dict:  # _label made a new meta: record it
                self._keep(res, "meta", res["meta"])
        return res

    def _element(self, node: dict[str, Any], rtype: str) -> dict[str, Any]:
        if "value" in node and _is_old_age(node):
            # Safe Harbor: ages over 89 are one category, "90 or older".
            self._note(f"{rtype}.age", C.DATE, None)
            self._record(node, "")  # the rest is kept as it is
            node["value"] = 90
            node["comparator"] = ">="
            self._slots.append((node, "comparator", ">="))
            return node
        kinds = self._kinds
        slots = self._slots
        dropped: list[str] | None = None  # keys to remove, after the loop
        coding = False
        sent_reference = ""  # a Reference's reference as sent (it may change below)
        if "display" in node:
            coding = "system" in node or "code" in node
            if not coding:
                sent_reference = str(node.get("reference", ""))
        is_attachment: bool | None = None  # computed when a rule first asks
        placeholder = False  # an Attachment's data was replaced
        for key, value in node.items():
            try:
                kind = kinds[key]
            except KeyError:
                kind = kinds[key] = _key_kind(key)
            # A Coding's display is a term: no rule names it.
            if kind < _DISPLAY or (kind == _DISPLAY and coding):
                # No rule names this key (most keys): redact the value by its own shape.
                shape = type(value)
                if shape is str:
                    # Inlined _value for the commonest case; a string never redacts to empty.
                    text = value
                    if value[:1].isdigit():  # only a date or an instant can change
                        text = node[key] = self._string(value, key, rtype)
                    if kind != _CODED:
                        slots.append((node, key, text))
                elif shape is dict:
                    if value:  # (an empty one stays: there is nothing to redact)
                        if "resourceType" in value and isinstance(value["resourceType"], str):
                            self._resource(value)
                        elif not self._element(value, rtype):
                            # Emptied by redaction (e.g. _birthDate): leave it out.
                            dropped = [key] if dropped is None else [*dropped, key]
                elif shape is list:
                    self._list(value, key, rtype)  # never emptied: items are never dropped
                elif shape is int or shape is float or shape is bool or value is None:
                    pass
                elif not self._generic(node, key, value, rtype):
                    dropped = [key] if dropped is None else [*dropped, key]
                continue
            path = f"{rtype}.{key}"
            if key == "display":
                # A Reference's display names what it points at.
                person = (
                    not sent_reference
                    or PERSON_REFERENCE.search(sent_reference)
                    # A urn names no type: a person unless the Bundle says otherwise.
                    or (
                        sent_reference.startswith("urn:")
                        and self._urn_types.get(sent_reference, "Patient") in PERSON_TYPES
                    )
                )
                self._note(path, C.NAME, value if person else None)
            elif key == "id" and isinstance(value, str):  # element ids can embed anything
                node[key] = self._pseudonym("fhir-element-id", value).lower()
                continue
            elif key in ("reference", "fullUrl", "location") and isinstance(value, str):
                reference = node[key] = self._reference(value, path)
                if key not in NOT_FREE_TEXT:
                    slots.append((node, key, reference))
                continue
            else:
                if key in ENCODED_KEYS and isinstance(value, str):
                    # A document inside the resource: its own format cannot be rewritten
                    # here, so a placeholder says what was removed.
                    self._note(path, C.OPAQUE_CONTENT, None)
                    node[key] = PLACEHOLDER_DATA
                    placeholder = placeholder or key == "data"
                    continue
                if key in _ATTACHMENT_DROP and is_attachment is None:
                    is_attachment = not _ATTACHMENT_HINTS.isdisjoint(node)
                if key in _ATTACHMENT_DROP and is_attachment:
                    self._note(path, C.OPAQUE_CONTENT, None)
                elif key in ("extension", "modifierExtension"):
                    kept = [e for e in as_list(value) if not _identifying_extension(e)]
                    if len(kept) != len(as_list(value)):
                        self._note(path, C.OTHER_ID, None)
                    if kept:  # dicts only (anything else is dropped as identifying)
                        node[key] = [self._value(e, key, rtype) for e in kept]
                        continue
                elif (
                    key in _DROP_EVERYWHERE
                    or key in _DROP_VALUES
                    or (key == "link" and rtype == "Bundle")
                ):
                    # Bundle.link holds search URLs (family=...&birthdate=...).
                    self._note(path, C.OTHER_ID, value if key in _DROP_VALUES else None)
                elif key == "valueAddress":
                    node[key] = self._address(value, path)
                    continue
                elif _is_identifier_key(key):
                    kept_identifier = self._identifier_element(value, path)
                    if kept_identifier is not None:
                        node[key] = kept_identifier
                        continue
                elif key == "url" and "method" in node and isinstance(value, str):
                    # Bundle.entry.request.url ("Patient/123", "Patient?identifier=..."): an id.
                    if "/" in value or "?" in value:
                        node[key] = self._reference(value, path)
                    continue
                elif self._generic(node, key, value, rtype):
                    continue
            # Every rule that gets here removes the element.
            dropped = [key] if dropped is None else [*dropped, key]
        if dropped is not None:
            for key in dropped:
                del node[key]
        if placeholder:
            node["contentType"] = PLACEHOLDER_TYPE
            if "size" in node:
                node["size"] = len(PLACEHOLDER_TEXT)
        return node

    def _generic(self, node: dict[str, Any], key: str, value: Any, rtype: str) -> bool:
        """``node[key]`` redacted by its shape; False when redaction emptied it (leave it
        out)."""
        was_empty = value in ({}, [])  # asked before the value is redacted in place
        redacted = self._value(value, key, rtype)
        if redacted in ({}, []) and not was_empty:
            return False
        if redacted is not value:
            node[key] = redacted
        if isinstance(redacted, str) and key not in NOT_FREE_TEXT:
            self._slots.append((node, key, redacted))
        return True

    def _string(self, value: str, key: str, rtype: str) -> str:
        if not value[:1].isdigit():
            # Every date and instant starts with a digit (isdigit() accepts all that \d does).
            return value
        if key in _INSTANT_KEYS and _DATETIME.match(value):
            year = self.options.dates.year_of(value)
            self._note(f"{rtype}.{key}", C.DATE, None)
            return f"{year}-01-01T00:00:00Z"
        # Codes and dates recur (a LOINC code per Observation, an Encounter's period in its
        # Claim): each distinct value is matched and generalized once.
        known = self._dates.get(value)
        if known is None:
            if _DATE.match(value) or _DATETIME.match(value):
                new = self.options.dates.generalize(value)
                known = (new or value[:4], new != value)
            else:
                known = (value, False)
            self._dates[value] = known
        if known[1]:
            self._note(f"{rtype}.{key}", C.DATE, None)
        return known[0]

    # -- rules ----------------------------------------------------------------------------------
    def _pseudonym_id(self, value: str, path: str) -> str:
        # Raw ids are not remembered for the output search: "example" or "1" would match
        # unrelated text. Their pseudonyms replace them everywhere.
        self._note(path, C.OTHER_ID, None)
        return self._pseudonym("fhir-id", value).lower()[:64]

    def _reference(self, ref: str, path: str) -> str:
        # A Bundle's 2,600 references name some 400 targets: each is rewritten once.
        known = self._references.get(ref)
        if known is None:
            known = self._references[ref] = self._new_reference(ref)
        if not ref.startswith("#"):
            self._note(path, C.OTHER_ID, None)
        return known

    def _new_reference(self, ref: str) -> str:
        if ref.startswith("#"):
            # Contained resources: their ids are pseudonymised the same way.
            return "#" + self._pseudonym("fhir-id", ref[1:]).lower()[:64] if len(ref) > 1 else ref
        if ref.startswith("urn:uuid:"):
            return "urn:uuid:" + self._uuid(ref[9:])
        match = None if "?" in ref else _REFERENCE.match(ref)
        if match is None:
            # Conditional or opaque references may carry search values: drop their content.
            return self._pseudonym("fhir-ref", ref).lower()
        rid = self._pseudonym("fhir-id", match["id"]).lower()[:64]
        return f"{match['base']}{match['type']}/{rid}"

    def _identifier_element(self, value: Any, path: str) -> Any:
        """An Identifier (0..1) or a list of them, redacted, in the same shape; None if empty."""
        redacted = self._identifiers(value, path)
        if not redacted:
            return None
        return redacted[0] if isinstance(value, dict) else redacted

    def _identifiers(self, value: Any, path: str) -> list[Any]:
        out = []
        for ident in as_list(value):
            if not isinstance(ident, dict):
                continue
            system = str(ident.get("system", ""))
            original = ident.get("value")
            self._note(path, C.SSN if system in SSN_SYSTEMS else C.MRN, original)
            if system in SSN_SYSTEMS or not self.options.pseudonymize_ids:
                continue
            kept: dict[str, Any] = {}
            for k, v in ident.items():
                if k in ("use", "type", "system"):
                    kept[k] = v
                    self._keep(kept, k, v)
            if isinstance(original, str):
                pseudonym = kept["value"] = self._pseudonym(system, original)
                self._slots.append((kept, "value", pseudonym))
            out.append(kept)
        return out

    def _address(self, address: Any, path: str) -> dict[str, Any]:
        self._note(path, C.GEOGRAPHY, None)
        if not isinstance(address, dict):
            return {}
        for key in ("line", "city", "district", "text"):
            for item in as_list(address.get(key)):
                if isinstance(item, str):
                    self._result.originals.add(item)
        kept: dict[str, Any] = {}
        for key in ("use", "type", "state", "country"):
            if key in address:
                kept[key] = address[key]
                self._keep(kept, key, kept[key])
        if isinstance(address.get("postalCode"), str):
            area = kept["postalCode"] = zip3(address["postalCode"])
            self._slots.append((kept, "postalCode", area))
        return kept

    def _note(self, path: str, category: Category, original: Any) -> None:
        self._noted.append(category._value_)  # = .value, without the enum's descriptor
        result = self._result
        result.locations.add(path)
        if original is not None:
            _collect(original, result.originals)


_PERSON_CATEGORY = {"name": C.NAME, "telecom": C.PHONE, "photo": C.PHOTO, "contact": C.NAME}


# Keys whose string values identify a person inside removed names, contacts and telecoms.
_IDENTIFYING_KEYS = frozenset({"family", "given", "text", "line", "city", "district", "value"})


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


def _scrub_slots(slots: list[_Slot], scrubber: ContextScrubber) -> None:
    """Every free string scrubbed where it sits. The distinct strings are scrubbed as one
    text (``scrub_pieces``: the same result as one by one); the few that change are written
    into their containers (the walk redacts the decoded document in place)."""
    distinct = list(dict.fromkeys([text for _, _, text in slots]))
    if not distinct:
        return
    changed = scrubber.scrub_pieces(distinct, "\x00")
    if not changed:
        return
    changes = {distinct[i]: new for i, new in changed.items()}
    for container, key, old in slots:
        new = changes.get(old)
        if new is None:
            continue
        # A slot may be stale (a meta's lastUpdated, an age's old comparator, a security
        # list _label rebuilt): write only where the recorded string still is.
        now = container.get(key) if isinstance(container, dict) else container[key]
        if now is old:
            container[key] = new


def _identifying_extension(extension: Any) -> bool:
    if not isinstance(extension, dict):
        return True
    if any(key in _IDENTIFYING_EXTENSION_VALUES for key in extension):
        return True
    return any(_identifying_extension(e) for e in as_list(extension.get("extension")))


def _urn_types(documents: list[Any]) -> dict[str, str]:
    """{fullUrl: resourceType} for the urn: entries of the Bundles among ``documents``."""
    types: dict[str, str] = {}
    for document in documents:
        if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
            continue
        for entry in as_list(document.get("entry")):
            if not isinstance(entry, dict):
                continue
            url, resource = entry.get("fullUrl"), entry.get("resource")
            if isinstance(url, str) and url.startswith("urn:") and isinstance(resource, dict):
                rtype = resource.get("resourceType")
                if isinstance(rtype, str):
                    types[url] = rtype
    return types


def _label(resource: dict[str, Any], pseudonymized: bool) -> None:
    meta = resource.get("meta")
    if type(meta) is not dict:  # none, or not an object (invalid FHIR): a new one
        meta = dict(meta) if isinstance(meta, dict) else {}
    meta.pop("lastUpdated", None)
    security = [s for s in as_list(meta.get("security")) if isinstance(s, dict)]
    codes = {s.get("code") for s in security}
    wanted = ["REDACTED"] + (["PSEUDED"] if pseudonymized else [])
    for code in wanted:
        if code not in codes:
            security.append({"system": SECURITY_SYSTEM, "code": code})
    meta["security"] = security
    resource["meta"] = meta
