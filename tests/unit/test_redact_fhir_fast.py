"""The fast paths of FHIR redaction do what the plain ones did: the scrub, which writes where
the (in-place) walk recorded each free string, changes exactly the strings a walk of the output
finds; and orjson's output is the same JSON as json's."""

from __future__ import annotations

import contextlib
import copy
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.formats import jsondoc
from gateway.formats.fhir import FHIR_JSON, FHIR_NDJSON
from gateway.formats.fhir import redact as fhir
from gateway.formats.fhir.redact import FhirOptions, FhirRedactor
from gateway.formats.fhir.resources import NOT_FREE_TEXT
from gateway.phi.safe_harbor import DatePolicy, Pseudonymizer
from gateway.phi.scrub import ContextScrubber
from tests.support.redaction import InspectingRedactor

SECRET = b"test-site-secret-0123456789abcdef"


def _free_strings(node: Any, key: str, into: list[str]) -> None:
    """Every free string of a document, by a walk of it (the scrub's old way)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str):
                if k not in NOT_FREE_TEXT:
                    into.append(v)
            else:
                _free_strings(v, k, into)
    elif isinstance(node, list):
        for v in node:
            if isinstance(v, str):
                if key not in NOT_FREE_TEXT:
                    into.append(v)
            else:
                _free_strings(v, key, into)


def _replaced(node: Any, key: str, changes: dict[str, str]) -> Any:
    if isinstance(node, str):  # a document that is a bare string
        return changes.get(node, node) if key not in NOT_FREE_TEXT else node
    if isinstance(node, dict):
        return {
            k: (changes.get(v, v) if k not in NOT_FREE_TEXT else v)
            if isinstance(v, str)
            else _replaced(v, k, changes)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [
            (changes.get(v, v) if key not in NOT_FREE_TEXT else v)
            if isinstance(v, str)
            else _replaced(v, key, changes)
            for v in node
        ]
    return node


def _reference_scrub(resources: list[Any], scrubber: ContextScrubber) -> list[Any]:
    strings: list[str] = []
    _free_strings(resources, "", strings)
    changes = {s: scrubber.scrub(s) for s in set(strings)}
    return [_replaced(r, "", changes) for r in resources]


def _options(keep: frozenset[str], pseudonymize: bool) -> FhirOptions:
    return FhirOptions(Pseudonymizer(SECRET), DatePolicy(), pseudonymize, keep)


def _check(document: Any, keep: frozenset[str], pseudonymize: bool) -> None:
    redacted = FhirRedactor(_options(keep, pseudonymize)).redact([copy.deepcopy(document)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fhir, "_scrub_slots", lambda slots, scrubber: None)
        unscrubbed = FhirRedactor(_options(keep, pseudonymize)).redact([copy.deepcopy(document)])
    scrubber = ContextScrubber()
    for value in unscrubbed.originals:
        scrubber.add_address_line(value)
    assert redacted.resources == _reference_scrub(unscrubbed.resources, scrubber)
    assert redacted.counts == unscrubbed.counts


NAME = "Quillfeather"
# Every place a kept or rebuilt value lands: kept elements, identifier types, address parts,
# labelled meta, old ages, extensions, nested resources, lists of strings.
TRICKY: dict[str, Any] = {
    "resourceType": "Bundle",
    "meta": {"lastUpdated": "2024-03-04T05:06:07Z", "profile": [f"urn:{NAME}"], "source": NAME},
    "entry": [
        {
            "fullUrl": "urn:uuid:1",
            "resource": {
                "resourceType": "Patient",
                "id": "p1",
                "meta": {"tag": [{"display": f"{NAME} tag"}], "source": f"#{NAME}"},
                "name": [{"family": NAME, "given": ["Orla"]}],
                "telecom": [{"value": "555-201-3344"}],
                "address": [
                    {"line": ["12 Juniper Hollow Rd"], "state": f"{NAME} State"},
                    {"text": f"near {NAME}", "postalCode": "02139", "use": "home"},
                ],
                "identifier": [
                    {"system": "urn:mrn", "value": "MRN-77", "type": {"text": f"{NAME} MRN"}}
                ],
                "birthDate": "1970-05-06",
                "generalPractitioner": [{"reference": "Practitioner/x", "display": NAME}],
            },
        },
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "meta": {"security": [{"code": "R"}, NAME], "source": NAME},
                "code": {"coding": [{"system": "s", "code": "1", "display": f"{NAME} panel"}]},
                "valueAge": {"value": 93, "unit": f"{NAME} years", "code": "a"},
                "component": [{"valueString": f"call 555-201-3344 or {NAME}"}],
                "extension": [{"url": "u", "valueCode": NAME}],
                "focus": [{"location": f"{NAME}/1"}],
                "interpretation": [[NAME, 1, None, True, 2.5], f"Juniper Hollow Road {NAME}"],
                "contained": [{"resourceType": "Patient", "id": "c", "name": [{"text": "Orla"}]}],
            }
        },
        {"resource": {"resourceType": "Coverage", "subscriberId": "SUB-1", "note": NAME}},
        # A meta that is not an object: _label makes one of it (here {"source": NAME}).
        {"resource": {"resourceType": "Device", "id": "d", "meta": [["source", NAME]]}},
        NAME,
    ],
}


@pytest.mark.parametrize("pseudonymize", [True, False])
@pytest.mark.parametrize(
    "keep", [frozenset(), frozenset({"Patient.address", "Patient.meta", "Bundle.meta"})]
)
def test_scrub_in_place_matches_a_walk_of_the_output(
    keep: frozenset[str], pseudonymize: bool
) -> None:
    _check(copy.deepcopy(TRICKY), keep, pseudonymize)


_KEYS = st.sampled_from(
    [
        "resourceType", "id", "meta", "lastUpdated", "security", "profile", "text", "name",
        "family", "address", "line", "state", "identifier", "type", "system", "value", "code",
        "display", "reference", "location", "url", "method", "extension", "valueString",
        "valueAge", "unit", "comparator", "birthDate", "entry", "resource", "subscriberId",
        "valueAddress", "use", "coding", "masterIdentifier", "contentType", "data", "link",
        "source",
    ]
)  # fmt: skip
_SCALARS = st.one_of(
    st.sampled_from(["Patient", "Bundle", "Observation", "", NAME, "Orla Quillfeather"]),
    st.sampled_from(["555-201-3344", "2020-01-02", "2020-01-02T10:00:00Z", "urn:uuid:9"]),
    st.sampled_from(["Patient/1", "years", "POST", "12 Juniper Hollow Rd", "o@x.org"]),
    st.sampled_from([95, 3, None, True, 1.5]),
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=6)),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_DOCUMENTS, keep=st.booleans(), pseudonymize=st.booleans())
def test_scrub_in_place_matches_a_walk_of_the_output_for_any_shape(
    document: Any, keep: bool, pseudonymize: bool
) -> None:
    kept = frozenset({"Patient.address", "Patient.meta", "Observation.name"} if keep else ())
    with contextlib.suppress(TypeError, ValueError):  # a meta _label cannot copy: refused
        _check(document, kept, pseudonymize)


def _redactor() -> InspectingRedactor:
    return InspectingRedactor(parse_config({}), SECRET)


@pytest.mark.parametrize(
    "value",
    [b"NaN", b"-Infinity", b"1e400", b"123456789012345678901234567890", b"-9223372036854775809"],
)
def test_numbers_orjson_cannot_write_are_written_as_before(value: bytes) -> None:
    body = b'{"resourceType": "Observation", "valueQuantity": {"value": %s}}' % value
    for fmt, sent in ((FHIR_JSON, body), (FHIR_NDJSON, body + b"\n" + body)):
        outcome = _redactor().redact(sent, "", fmt)
        assert not outcome.error
        for line in outcome.body.splitlines():
            written = json.loads(line)["valueQuantity"]["value"]
            expected = json.loads(value)
            assert written == expected or (math.isnan(written) and math.isnan(expected))


def test_deep_nesting_and_lone_surrogates() -> None:
    # Deeper than orjson writes (inspection refuses FHIR this deep, so only the writer sees it).
    deep = b'{"resourceType": "Observation", "component": %s1%s}' % (b'{"a":' * 300, b"}" * 300)
    assert json.loads(jsondoc.dumps(json.loads(deep))) == json.loads(deep)
    inspected = _redactor().redact(deep, "", FHIR_JSON)
    assert inspected.error == "inspected as binary"  # nested too deeply: blocked abroad
    lone = b'{"resourceType": "Observation", "valueString": "\\ud800"}'
    assert _redactor().redact(lone, "", FHIR_JSON).error  # not UTF-8: blocked


def test_orjson_output_is_the_same_json() -> None:
    document = {
        "resourceType": "Observation",
        "valueQuantity": {"value": 1e16, "low": 0.1, "zero": -0.0, "tiny": 5e-324, "n": 2**63},
        "note": [],
        "component": [{"valueString": 'é "quoted" \\ \u2028 \x01 ✓'}, {"valueBoolean": False}],
    }
    outcome = _redactor().redact(json.dumps(document).encode(), "", FHIR_JSON)
    assert not outcome.error
    written = json.loads(outcome.body)
    assert json.dumps(written["valueQuantity"]) == json.dumps(document["valueQuantity"])
    assert written["component"] == document["component"]


@pytest.mark.parametrize(
    ("body", "long_number"),
    [
        (b'{"a": 18446744073709551616}', True),
        (b"[1, -9223372036854775809]", True),
        (b'{"a": "seed: 1234567890123456789012"}', False),  # in a string: orjson reads it
        (b'{"a": "q\\" 1234567890123456789012"}', False),  # after an escaped quote
        (b'{"a": "1234567890123456789", "b": 12345678901234567890123}', True),
        (b'{"a": "q\\\\", "b": "1234567890123456789012"}', True),  # escaped backslash: json
        (b'{"a": 123456789012345678}', False),
    ],
)
def test_decode_reads_long_numbers_with_json(body: bytes, long_number: bool) -> None:
    assert jsondoc.long_number(body) is long_number
    assert jsondoc.exact(body, *jsondoc.read(body)) == (json.loads(body), True)
