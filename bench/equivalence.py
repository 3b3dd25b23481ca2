"""Does a change to inspection, redaction or refusal change what the gateway does? Records
every outcome over the corpus, generated patients, evasion cases, clean texts and
deterministically mutated documents, and compares two such records.

    .venv/bin/python -m bench.equivalence --save /tmp/before.pickle   # on the old code
    .venv/bin/python -m bench.equivalence --compare /tmp/before.pickle  # on the new code

Three kinds of outcome, each keyed by kind and case:
- ``inspect/…``: the inspection of a body (format, message type, findings with locations,
  PHI or not, error, limit, what a refusal echoes back);
- ``redact/<config>/…``: the redaction of a body the inspection found redactable, under
  several configurations. HL7 v2 and FHIR XML bodies must be the same bytes; FHIR JSON and
  NDJSON bodies the same JSON once parsed (orjson writes them compact); counts, locations
  and errors must be equal;
- ``refuse/…``: the refusal sent back (status, content type, body, headers), for several
  Content-Type/Accept pairs and an MLLP ACK code (the ACK's timestamp is left out).

Outcomes only ever hold synthetic or public sample data, and the record stays where it is
written (never committed)."""

from __future__ import annotations

import argparse
import json
import pickle
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from gateway.config import Limits, parse_config
from gateway.enforce import block_response
from gateway.formats.fhir import FHIR_JSON, FHIR_NDJSON, FHIR_XML
from gateway.formats.hl7v2 import HL7V2
from gateway.formats.hl7v2.ack import hl7_reject_ack
from gateway.inspector import Inspector
from gateway.model import Action, Format, Inspection, Verdict
from gateway.redactor import Redactor
from tests.support.clean_text import CLEAN_TEXTS
from tests.support.evasion import evasion_cases
from tests.support.patients import (
    fhir_observation_bundle,
    fhir_patient,
    fhir_patient_xml,
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
REDACTABLE = frozenset({HL7V2, FHIR_JSON, FHIR_NDJSON, FHIR_XML})
REFUSALS = (
    ("", ""),
    ("application/fhir+json", ""),
    ("", "application/fhir+xml"),
    ("application/json", "application/xml"),
)
VERDICT = Verdict(Action.BLOCK, "foreign-phi", "a reason", record=True)
_ACK_TIME = re.compile(rb"\|\d{14}\|")
Outcome = tuple[object, ...]
Case = tuple[str, bytes, str]  # name, body, content encoding


def cases(patients: int, mutations: int) -> Iterator[Case]:
    documents: list[bytes] = []
    if CORPUS.is_dir():
        for path in sorted(CORPUS.rglob("*")):
            if path.is_file() and path.suffix in (".hl7", ".json", ".ndjson", ".xml"):
                documents.append(path.read_bytes())
                yield f"corpus:{path.relative_to(CORPUS)}", documents[-1], ""
    else:
        print(f"(corpus not found at {CORPUS}: generated cases only)", file=sys.stderr)
    for seed in range(patients):
        patient = make_patient(seed)
        generated = {
            "adt": hl7_adt(patient).encode(),
            "rich-lf": hl7_rich(patient, "ORU^R01", "2.3", segment_end="\n").encode(),
            "rich-odd": hl7_rich(patient, delimiters="#$*@%").encode(),
            "rich": hl7_rich(patient).encode(),
            "patient": json.dumps(fhir_patient(patient)).encode(),
            "patient-xml": fhir_patient_xml(patient),
            "bundle": json.dumps(fhir_rich_bundle(patient)).encode(),
            "obs": json.dumps(fhir_observation_bundle(patient)).encode(),
        }
        for kind, body in generated.items():
            yield f"{kind}:{seed}", body, ""
        if seed < 10:
            documents.extend(generated.values())
            for case in evasion_cases(patient):
                encoding = case.headers.get("content-encoding", "")
                yield f"evasion-{case.name}:{seed}", case.body, encoding
    for number, text in enumerate(CLEAN_TEXTS):
        yield f"clean:{number}", text.encode(), ""
    rng = random.Random(20261201)
    for number in range(mutations if documents else 0):
        yield f"mutated:{number}", _mutate(rng, rng.choice(documents)), ""


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        at = rng.randrange(len(out) + 1)
        if choice < 0.3 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif choice < 0.5:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice < 0.7:
            out[at:at] = rng.choice((b"|", b"^", b"\r", b"\n", b"{", b"}", b"<", b">", b'"', b"\\"))
        elif choice < 0.85:
            del out[at : at + rng.randint(1, 16)]
        else:
            out = out[: max(1, at)]
    return bytes(out)


def inspection_outcome(inspection: Inspection) -> Outcome:
    findings = tuple((f.category.value, f.location) for f in inspection.findings)
    sent = inspection.reply
    ends = ("sending_application", "sending_facility", "receiving_application")
    endpoints = (
        (*(sent[k] for k in ends), sent["receiving_facility"])
        if "sending_application" in sent
        else None
    )
    reply = (sent.get("control_id", ""), sent.get("version", ""), endpoints)
    return (
        inspection.format.value,
        inspection.message_type,
        findings,
        inspection.contains_phi,
        inspection.error,
        inspection.limit,
        reply,
    )


def refusal_outcomes(inspection: Inspection) -> dict[str, Outcome]:
    out: dict[str, Outcome] = {}
    for content_type, accept in REFUSALS:
        answer = block_response(
            VERDICT, inspection, "INC-1", content_type=content_type, accept=accept
        )
        body = _ACK_TIME.sub(b"|TIME|", answer.body)
        out[f"{content_type}|{accept}"] = (answer.status, answer.content_type, body, answer.headers)
    ack = hl7_reject_ack(inspection, "refused", "INC-1", "AE").encode()
    out["mllp-ae"] = (_ACK_TIME.sub(b"|TIME|", ack),)
    return out


def record(patients: int, mutations: int) -> tuple[dict[str, Outcome], dict[str, Format]]:
    """Every outcome, and the format of each redaction case."""
    outcomes: dict[str, Outcome] = {}
    formats: dict[str, Format] = {}
    inspector = Inspector(Limits(max_body_bytes=16 * 1024 * 1024))
    redactors = {}
    for config_name, settings in CONFIGS.items():
        config = parse_config({"redaction": settings})
        redactors[config_name] = Redactor(config.redaction, b"equivalence-secret-0123456789")
    for name, body, encoding in cases(patients, mutations):
        inspection = inspector.inspect(body, encoding)
        outcomes[f"inspect/{name}"] = inspection_outcome(inspection)
        for variant, outcome in refusal_outcomes(inspection).items():
            outcomes[f"refuse/{name}/{variant}"] = outcome
        if inspection.format not in REDACTABLE or not inspection.contains_phi:
            continue
        for config_name, redactor in redactors.items():
            # Each redaction mutates the parse it is handed: inspected again for each.
            out = redactor.redact(inspector.inspect(body, encoding))
            counts = tuple(sorted(out.counts.items()))
            key = f"redact/{config_name}/{name}"
            outcomes[key] = (out.body, counts, out.locations, out.error)
            formats[key] = inspection.format
    return outcomes, formats


def _canonical(body: bytes, fmt: Format) -> str:
    """A JSON body parsed and written again by one writer: equal for the same values, types
    (1, 1.0 and true differ) and key order, whatever the spacing or number spelling."""
    if fmt == FHIR_NDJSON:
        return "\n".join(json.dumps(json.loads(line)) for line in body.splitlines() if line.strip())
    return json.dumps(json.loads(body))


def differences(old: Outcome | None, new: Outcome | None, fmt: Format | None) -> list[str]:
    """The parts of two outcomes that differ (FHIR JSON bodies compared as parsed JSON)."""
    if old is None or new is None:
        return [] if old == new else ["missing" if new is None else "new"]
    which = [
        f"part {i}" for i in range(max(len(old), len(new))) if old[i : i + 1] != new[i : i + 1]
    ]
    json_body = fmt in (FHIR_JSON, FHIR_NDJSON)
    body_old, body_new = old[0], new[0]
    if "part 0" in which and json_body and isinstance(body_old, bytes) and body_old:
        assert fmt is not None and isinstance(body_new, bytes)
        if body_new and _canonical(body_old, fmt) == _canonical(body_new, fmt):
            which.remove("part 0")
    return which


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path)
    action.add_argument("--compare", type=Path)
    parser.add_argument("--patients", type=int, default=150)
    parser.add_argument("--mutations", type=int, default=3000)
    args = parser.parse_args()
    outcomes, formats = record(args.patients, args.mutations)
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
    for key in sorted(differing)[:30]:  # names and parts only, never content
        print(f"DIFFERS {key}: {', '.join(differing[key])}")
    kinds = {
        kind: sum(1 for k in outcomes if k.startswith(kind))
        for kind in ("inspect/", "redact/", "refuse/")
    }
    print(
        f"{len(outcomes)} outcomes ({', '.join(f'{n} {k[:-1]}' for k, n in kinds.items())}),"
        f" {len(differing)} differ"
    )
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
