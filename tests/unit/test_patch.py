"""PATCH bodies are read as the fragments they write: JSON Patch (RFC 6902) and FHIRPath
Patch; a patch that sets a name or a birth date is PHI, one that sets a status is not."""

from __future__ import annotations

import orjson

from gateway.config import Limits
from gateway.formats.patch import FHIRPATH_PATCH, JSON_PATCH
from gateway.inspector import Inspector
from tests.support.patients import make_patient

INSPECTOR = Inspector(Limits())
PATIENT = make_patient(1803)
FAMILY = "Quillfeather"  # a surname as people have them (the synthetic ones carry digits)


def _operation(kind: str, path: str, value: dict[str, object], name: str = "") -> dict[str, object]:
    parts: list[dict[str, object]] = [
        {"name": "type", "valueCode": kind},
        {"name": "path", "valueString": path},
    ]
    if name:
        parts.append({"name": "name", "valueString": name})
    parts.append({"name": "value", **value})
    return {"name": "operation", "part": parts}


def test_json_patch_setting_a_name_or_birth_date_is_phi() -> None:
    for patch in (
        [{"op": "replace", "path": "/name/0/family", "value": FAMILY}],
        [{"op": "add", "path": "/birthDate", "value": PATIENT.birth_date_iso}],
        [
            {
                "op": "add",
                "path": "/name/-",
                "value": {"family": PATIENT.family, "given": [PATIENT.given]},
            }
        ],
    ):
        result = INSPECTOR.inspect(orjson.dumps(patch))
        assert result.format == JSON_PATCH and result.contains_phi, patch
        assert FAMILY not in " ".join(result.locations())
    clean = [
        {"op": "replace", "path": "/status", "value": "final"},
        {"op": "remove", "path": "/note/0"},
    ]
    result = INSPECTOR.inspect(orjson.dumps(clean))
    assert result.format == JSON_PATCH and not result.contains_phi


def test_fhirpath_patch_setting_a_name_or_birth_date_is_phi() -> None:
    birth = _operation("replace", "Patient.birthDate", {"valueDate": PATIENT.birth_date_iso})
    name = _operation(
        "add",
        "Patient",
        {"valueHumanName": {"family": PATIENT.family, "given": [PATIENT.given]}},
        "name",
    )
    for operation in (birth, name):
        body = {"resourceType": "Parameters", "parameter": [operation]}
        result = INSPECTOR.inspect(orjson.dumps(body))
        assert result.format == FHIRPATH_PATCH and result.contains_phi
    status = _operation("replace", "Observation.status", {"valueCode": "final"})
    clean = {"resourceType": "Parameters", "parameter": [status]}
    assert not INSPECTOR.inspect(orjson.dumps(clean)).contains_phi
