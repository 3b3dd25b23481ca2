"""What FHIR says about persons: which resources are people, which are about one, which never
are, which fields point at the subject, which identifier systems are SSNs. Read alike by
inspection, redaction and verification."""

from __future__ import annotations

import re
from typing import Any, TypeGuard

from gateway.model import Category, Format

FHIR_JSON = Format("fhir-json")
FHIR_NDJSON = Format("fhir-ndjson")
FHIR_XML = Format("fhir-xml")
FHIR_FORMATS = frozenset({FHIR_JSON, FHIR_NDJSON, FHIR_XML})
C = Category
PERSON_TYPES = frozenset({"Patient", "RelatedPerson", "Person"})
CONTAINER_TYPES = frozenset({"Bundle", "Parameters"})
# Resources that never describe a patient by themselves (they are still walked for contained
# resources and patient references: a Group listing patients is PHI, a ValueSet never is).
NON_PATIENT_TYPES = frozenset(
    {
        "ActivityDefinition",
        "CapabilityStatement",
        "CodeSystem",
        "CompartmentDefinition",
        "ConceptMap",
        "Endpoint",
        "GraphDefinition",
        "HealthcareService",
        "ImplementationGuide",
        "Library",
        "Location",
        "Measure",
        "Medication",
        "MedicinalProductDefinition",
        "MessageDefinition",
        "NamingSystem",
        "OperationDefinition",
        "OperationOutcome",
        "Organization",
        "OrganizationAffiliation",
        "PlanDefinition",
        "Practitioner",
        "PractitionerRole",
        "Questionnaire",
        "SearchParameter",
        "StructureDefinition",
        "StructureMap",
        "Substance",
        "SubscriptionTopic",
        "TerminologyCapabilities",
        "TestScript",
        "ValueSet",
        "EventDefinition",
        "ObservationDefinition",
        "SpecimenDefinition",
        "ChargeItemDefinition",
        "DeviceDefinition",
        "Evidence",
        "EvidenceVariable",
        "ManufacturedItemDefinition",
        "PackagedProductDefinition",
        "Ingredient",
        "RegulatedAuthorization",
        "Citation",
        "Requirements",
        "ActorDefinition",
    }
)
# Fields of clinical resources that point at the person the resource is about.
# Elements whose string is a base64 document (Binary.data, Attachment.data, valueBase64Binary):
# read by its own format on inspection, replaced by a placeholder on redaction.
ENCODED_KEYS = frozenset({"data", "valueBase64Binary"})
SUBJECT_FIELDS = frozenset(
    {
        "subject",
        "patient",
        "beneficiary",
        "subscriber",
        "policyHolder",
        "individual",
        "recipient",
        "sender",
    }
)
# "Patient/123", "https://x/fhir/Patient/123" and conditional "Patient?identifier=..." (and
# the degenerate "Patient/" and "Patient?": a reference aimed at a person all the same).
PERSON_REFERENCE = re.compile(r"(?:^|/)(?:Patient|RelatedPerson|Person)[/?]")
SSN_SYSTEMS = ("http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1")
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
_MAX_SEARCH_DEPTH = 32


def is_resource(value: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict) and isinstance(value.get("resourceType"), str)


def as_list(value: Any) -> list[Any]:
    """FHIR's 0..* elements may be sent as a single value: always a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def find_resources(node: Any, depth: int = 0) -> list[dict[str, Any]]:
    """FHIR resources anywhere in a JSON document (a resource stops the search below it)."""
    if depth > _MAX_SEARCH_DEPTH:
        raise RecursionError
    if is_resource(node):
        return [node]
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for value in node.values():
            if isinstance(value, dict | list):
                found += find_resources(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, dict | list):
                found += find_resources(value, depth + 1)
    return found
