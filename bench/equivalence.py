"""Does a change to the redactor change what it forwards? Records every redaction outcome
(body, counts, locations, error) over the corpus and generated patients under several
configurations, and compares two such records.

    .venv/bin/python -m bench.equivalence --save /tmp/before.pickle   # on the old code
    .venv/bin/python -m bench.equivalence --compare /tmp/before.pickle  # on the new code

For performance work: a faster redactor must forward the same bytes. Outcomes only ever hold
synthetic or public sample data, and the record stays where it is written (never committed)."""

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


def record(patients: int) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    for config_name, settings in CONFIGS.items():
        config = parse_config({"redaction": settings})
        redactor = Redactor(config.redaction, config.limits, b"equivalence-secret-0123456789")
        for name, body, fmt in cases(patients):
            out = redactor.redact(body, "", fmt)
            counts = tuple(sorted(out.counts.items()))
            outcomes[f"{config_name}/{name}"] = (out.body, counts, out.locations, out.error)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path)
    action.add_argument("--compare", type=Path)
    parser.add_argument("--patients", type=int, default=300)
    args = parser.parse_args()
    outcomes = record(args.patients)
    if args.save:
        args.save.write_bytes(pickle.dumps(outcomes))
        print(f"{len(outcomes)} outcomes saved to {args.save}")
        return 0
    before: dict[str, Outcome] = pickle.loads(args.compare.read_bytes())
    differ = [k for k in before.keys() | outcomes.keys() if before.get(k) != outcomes.get(k)]
    for key in sorted(differ)[:20]:
        old, new = before.get(key), outcomes.get(key)
        parts = ("body", "counts", "locations", "error")
        which = [p for i, p in enumerate(parts) if old is None or new is None or old[i] != new[i]]
        print(f"DIFFERS {key}: {', '.join(which)}")  # names and parts only, never content
    print(f"{len(outcomes)} outcomes, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
