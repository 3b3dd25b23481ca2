"""Does a change to the redactor change what it forwards? Records every redaction outcome
(body, counts, locations, error) over the corpus and generated patients under several
configurations, and compares two such records.

    .venv/bin/python -m bench.equivalence --save /tmp/before.pickle   # on the old code
    .venv/bin/python -m bench.equivalence --compare /tmp/before.pickle  # on the new code

For performance work: a faster redactor must forward the same message. HL7 v2 and FHIR XML
bodies must be the same bytes; FHIR JSON and NDJSON bodies the same JSON once parsed (since
orjson writes them, compact: json wrote ", " and ": "); counts, locations and errors must be
equal. Outcomes only ever hold synthetic or public sample data, and the record stays where it
is written (never committed)."""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

from gateway.config import parse_config
from gateway.model import Format
from gateway.redact.redactor import Redactor
from tests.support.patients import (
    fhir_observation_bundle,
    fhir_patient,
    fhir_rich_bundle,
    hl7_adt,
    hl7_rich,
    make_patient,
)

CORPUS = Path(__file__).parents[2] / "shared" / "corpus"
CONFIGS: dict[str, dict[str, object]] = {
    "default": {},
    "remove": {"identifiers": "remove"},
    "shift": {"dates": "shift"},
    "keep": {"keep": ["PID-11", "Patient.address", "NK1-2"], "z_segments": "keep"},
}
_FORMATS = {".hl7": Format.HL7V2, ".json": Format.FHIR_JSON, ".ndjson": Format.FHIR_NDJSON}
Outcome = tuple[bytes, tuple[tuple[str, int], ...], tuple[str, ...], str]


def cases(patients: int) -> Iterator[tuple[str, bytes, Format]]:
    if CORPUS.is_dir():
        for path in sorted(CORPUS.rglob("*")):
            fmt = _FORMATS.get(path.suffix) or (Format.FHIR_XML if path.suffix == ".xml" else None)
            if fmt is not None and path.is_file():
                yield f"corpus:{path.relative_to(CORPUS)}", path.read_bytes(), fmt
    else:
        print(f"(corpus not found at {CORPUS}: generated patients only)", file=sys.stderr)
    for seed in range(patients):
        patient = make_patient(seed)
        yield f"adt:{seed}", hl7_adt(patient).encode(), Format.HL7V2
        yield (
            f"rich-lf:{seed}",
            hl7_rich(patient, "ORU^R01", "2.3", segment_end="\n").encode(),
            Format.HL7V2,
        )
        yield f"rich-odd:{seed}", hl7_rich(patient, delimiters="#$*@%").encode(), Format.HL7V2
        yield f"rich:{seed}", hl7_rich(patient).encode(), Format.HL7V2
        yield f"patient:{seed}", json.dumps(fhir_patient(patient)).encode(), Format.FHIR_JSON
        yield f"bundle:{seed}", json.dumps(fhir_rich_bundle(patient)).encode(), Format.FHIR_JSON
        observations = fhir_observation_bundle(patient)
        yield f"obs:{seed}", json.dumps(observations).encode(), Format.FHIR_JSON


def record(patients: int) -> tuple[dict[str, Outcome], dict[str, Format]]:
    """Every outcome, and the format of each case."""
    outcomes: dict[str, Outcome] = {}
    formats: dict[str, Format] = {}
    for config_name, settings in CONFIGS.items():
        config = parse_config({"redaction": settings})
        redactor = Redactor(config.redaction, config.limits, b"equivalence-secret-0123456789")
        for name, body, fmt in cases(patients):
            out = redactor.redact(body, "", fmt)
            counts = tuple(sorted(out.counts.items()))
            outcomes[f"{config_name}/{name}"] = (out.body, counts, out.locations, out.error)
            formats[f"{config_name}/{name}"] = fmt
    return outcomes, formats


def _canonical(body: bytes, fmt: Format) -> str:
    """A JSON body parsed and written again by one writer: equal for the same values, types
    (1, 1.0 and true differ) and key order, whatever the spacing or number spelling."""
    if fmt is Format.FHIR_NDJSON:
        return "\n".join(json.dumps(json.loads(line)) for line in body.splitlines() if line.strip())
    return json.dumps(json.loads(body))


def differences(old: Outcome | None, new: Outcome | None, fmt: Format | None) -> list[str]:
    """The parts of two outcomes that differ (FHIR JSON bodies compared as parsed JSON)."""
    if old is None or new is None:
        return [] if old == new else ["body", "counts", "locations", "error"]
    parts = ("body", "counts", "locations", "error")
    which = [p for i, p in enumerate(parts) if old[i] != new[i]]
    json_body = fmt is Format.FHIR_JSON or fmt is Format.FHIR_NDJSON
    if "body" in which and json_body and old[0] and new[0]:
        assert fmt is not None
        if _canonical(old[0], fmt) == _canonical(new[0], fmt):
            which.remove("body")
    return which


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path)
    action.add_argument("--compare", type=Path)
    parser.add_argument("--patients", type=int, default=300)
    args = parser.parse_args()
    outcomes, formats = record(args.patients)
    if args.save:
        args.save.write_bytes(pickle.dumps(outcomes))
        print(f"{len(outcomes)} outcomes saved to {args.save}")
        return 0
    before: dict[str, Outcome] = pickle.loads(args.compare.read_bytes())
    differing = {
        key: which
        for key in before.keys() | outcomes.keys()
        if (which := differences(before.get(key), outcomes.get(key), formats.get(key)))
    }
    for key in sorted(differing)[:20]:  # names and parts only, never content
        print(f"DIFFERS {key}: {', '.join(differing[key])}")
    rewritten = sum(
        1
        for k in before.keys() & outcomes.keys()
        if before[k][0] != outcomes[k][0] and "body" not in differing.get(k, [])
    )
    print(
        f"{len(outcomes)} outcomes, {len(differing)} differ"
        f" ({rewritten} FHIR JSON bodies are other bytes for the same JSON)"
    )
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
