"""FHIR resources (JSON, NDJSON, XML converted to the same tree): which ones identify a patient.

A resource carries PHI when it *is* a person (Patient, RelatedPerson, Person) or when it is about
one: it references a person, or names or identifies one in a subject/patient-style field.
Terminology, conformance and directory resources (CapabilityStatement, ValueSet, Organization,
Practitioner, ...) are not PHI on their own. Containers (Bundle, Parameters) are walked.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from gateway.errors import FhirError
from gateway.formats.fhir.resources import (
    CONTAINER_TYPES,
    ENCODED_KEYS,
    NON_PATIENT_TYPES,
    PERSON_REFERENCE,
    PERSON_TYPES,
    SSN_SYSTEMS,
    SUBJECT_FIELDS,
    as_list,
    is_resource,
)
from gateway.model import IDENTIFYING, Category, Document, Finding, Format, Inspection

C = Category
# Payload text that ends up in locations and audit rows must look like FHIR names, or it is
# replaced: a JSON key or resourceType can be anything, including a patient's name.
_SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_DEPTH = 64
MAX_FINDINGS = 1000
_SKIPPED_KEYS = frozenset({"resourceType", "text", "meta"})
_RECORD_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[^/?#]+")
_PERSON_FIELDS: dict[str, Category] = {
    "name": C.NAME,
    "address": C.GEOGRAPHY,
    "birthDate": C.DATE,
    "deceasedDateTime": C.DATE,
    "photo": C.PHOTO,
    "contact": C.NAME,
    "link": C.PATIENT_REFERENCE,
}
_TELECOM_SYSTEMS: dict[str, Category] = {"email": C.EMAIL, "fax": C.FAX, "url": C.URL}


def safe_name(name: str) -> str:
    return _checked_name(name) if len(name) <= 64 else "?"


@functools.lru_cache(maxsize=4096)
def _checked_name(name: str) -> str:
    # Cached: the same few hundred element names recur in every document.
    return name if _SAFE_NAME.match(name) else "?"


def _identifier_category(identifier: Any) -> Category:
    if not isinstance(identifier, dict):
        return C.MRN
    if str(identifier.get("system", "")) in SSN_SYSTEMS:
        return C.SSN
    kind = identifier.get("type")
    coding = kind.get("coding") if isinstance(kind, dict) else None
    codes = {c.get("code") for c in as_list(coding) if isinstance(c, dict)}
    if "SS" in codes:
        return C.SSN
    if "DL" in codes:
        return C.LICENSE_NUMBER
    if codes & {"MB", "SN"}:
        return C.HEALTH_PLAN_ID
    return C.MRN


class _Walker:
    """Walks one document; collects findings with FHIRPath-like locations."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        # (location, base64 text) of every attachment's data, read by its own format later.
        self.attachments: list[tuple[str, str]] = []
        self.person_urls: set[str] = set()
        self.resource_types: list[str] = []

    def add(self, category: Category, location: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(category, location))

    def collect_person_urls(self, node: Any) -> None:
        """Bundles reference entries by fullUrl (urn:uuid:...): learn which are persons."""
        for entry in _entries(node):
            resource = entry.get("resource")
            url = entry.get("fullUrl")
            if url and is_resource(resource) and resource["resourceType"] in PERSON_TYPES:
                self.person_urls.add(str(url))

    def resource(self, res: dict[str, Any], depth: int) -> None:
        # Locations start at the resource type ("Patient.name"), however deep it is nested.
        rtype = safe_name(res["resourceType"])
        self.resource_types.append(rtype)
        if rtype in CONTAINER_TYPES:
            self.collect_person_urls(res)
        if rtype in PERSON_TYPES:
            self.person(res, rtype)
        clinical = rtype not in NON_PATIENT_TYPES and rtype not in PERSON_TYPES
        self.fields(res, rtype, clinical, depth + 1)

    def person(self, res: dict[str, Any], path: str) -> None:
        if res.get("id"):
            self.add(C.OTHER_ID, f"{path}.id")
        for key, category in _PERSON_FIELDS.items():
            if res.get(key):
                self.add(category, f"{path}.{key}")
        for ident in as_list(res.get("identifier")):
            self.add(_identifier_category(ident), f"{path}.identifier")
        for telecom in as_list(res.get("telecom")):
            system = telecom.get("system") if isinstance(telecom, dict) else None
            self.add(_TELECOM_SYSTEMS.get(str(system), C.PHONE), f"{path}.telecom")

    def walk(self, node: Any, path: str, clinical: bool, depth: int) -> None:
        """Descend into any value: nested resources start their own context."""
        if depth > MAX_DEPTH:
            raise FhirError("FHIR document nested too deeply")
        if isinstance(node, list):
            for item in node:
                self.walk(item, path, clinical, depth + 1)
        elif is_resource(node):
            self.resource(node, depth)
        elif isinstance(node, dict):
            self.fields(node, path, clinical, depth)

    def fields(self, node: dict[str, Any], path: str, clinical: bool, depth: int) -> None:
        """One element's fields: check references, then descend (the hot loop of large
        Bundles: lists and plain elements are walked here directly, without ``walk``)."""
        if depth > MAX_DEPTH:
            raise FhirError("FHIR document nested too deeply")
        ref = node.get("reference")
        if isinstance(ref, str):
            self._reference(ref, node, path, clinical)
        if clinical and node.get("address") and path.endswith(".network"):
            self.add(C.IP_ADDRESS, f"{path}.address")  # AuditEvent.agent.network
        for key, value in node.items():
            if type(value) is dict:
                items: list[Any] = [value]
            elif type(value) is list:
                items = value
            else:
                if key in ENCODED_KEYS and type(value) is str and value:
                    # Binary.data, Attachment.data, valueBase64Binary: a document of its own.
                    self.attachments.append((f"{path}.{key}", value))
                continue
            if key in _SKIPPED_KEYS:
                continue
            child = f"{path}.{safe_name(key)}"
            subject = clinical and key in SUBJECT_FIELDS
            for item in items:
                if type(item) is dict:
                    if subject:
                        self._subject(item, child)
                    if isinstance(item.get("resourceType"), str):
                        self.resource(item, depth + 1)
                    else:
                        self.fields(item, child, clinical, depth + 1)
                elif type(item) is list:
                    self.walk(item, child, clinical, depth + 1)

    def _reference(self, ref: str, node: dict[str, Any], path: str, clinical: bool) -> None:
        if PERSON_REFERENCE.search(ref) or ref in self.person_urls:
            self.add(C.PATIENT_REFERENCE, path)
            if node.get("display"):
                self.add(C.NAME, f"{path}.display")
        elif (
            clinical
            and (match := _RECORD_REFERENCE.search(ref))
            and match.group(1) not in NON_PATIENT_TYPES
        ):
            # An id of another patient-specific record (Procedure/123) identifies that record.
            self.add(C.OTHER_ID, path)

    def _subject(self, value: Any, path: str) -> None:
        """subject/patient fields that name or identify a person without a reference."""
        if not isinstance(value, dict) or is_resource(value) or "reference" in value:
            return  # a reference is judged by the reference rule
        if value.get("display"):
            self.add(C.NAME, f"{path}.display")
        if value.get("identifier"):
            self.add(_identifier_category(value["identifier"]), f"{path}.identifier")


def _entries(bundle: Any) -> Iterator[dict[str, Any]]:
    for entry in as_list(bundle.get("entry") if isinstance(bundle, dict) else None):
        if isinstance(entry, dict):
            yield entry


def _summary(walker: _Walker, fmt: Format, document: Document | None) -> Inspection:
    findings = tuple(walker.findings)
    contains_phi = any(
        f.category in IDENTIFYING or f.category is C.OPAQUE_CONTENT for f in findings
    )
    types = walker.resource_types
    message_type = types[0] if types else ""
    return Inspection(
        format=fmt,
        message_type=message_type,
        findings=findings,
        contains_phi=contains_phi,
        document=document,
    )


def inspect_resources(
    resources: list[dict[str, Any]], fmt: Format, document: Document | None = None
) -> tuple[Inspection, list[tuple[str, str]]]:
    """The findings of ``resources`` (``document``: the parse the inspection carries on), and
    the (location, base64 text) of the attachments they carry, for their own formats."""
    walker = _Walker()
    for res in resources:
        walker.resource(res, 0)
    return _summary(walker, fmt, document), walker.attachments
