"""X12 inspection and redaction cost, in process (no proxy), as the engine pays it: a 2 KB
837P claim inspected (target 0.2 ms) and redacted, and a 1 MB batch file of claims (one
interchange, a transaction set per patient) inspected (target 50 ms) and redacted. Targets
from the X12 issue, on the reference machine; each figure is also given divided by this
machine's slowdown, measured round by round with hl7apy's parse as the yardstick (see
bench/redaction.py). The proxy's throughput on the 2 KB claim, beside bare mitmdump, is the
``x12-837p-2k`` payload of ``python -m bench``.
Run: .venv/bin/python -m bench.x12"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable

from bench.payloads import x12_837p_2k
from bench.redaction import paired, print_header, report, yardstick
from gateway.config import parse_config
from gateway.formats.x12 import X12
from gateway.inspector import Inspector
from tests.support.patients import make_patient
from tests.support.redaction import InspectingRedactor
from tests.support.x12 import claim_837p, claim_batch

BATCH_TARGET = 1_000_000


def batch_1mb() -> bytes:
    patients = [make_patient(seed) for seed in range(4000)]
    size = len(claim_batch(patients[:10]))
    count = max(1, BATCH_TARGET * 10 // size)
    return claim_batch(patients[:count]).encode()


def main() -> int:
    config = parse_config({})
    inspector = Inspector(config.limits)
    redactor = InspectingRedactor(config, b"bench-secret-0123456789abcdef")
    claim = x12_837p_2k()
    batch = batch_1mb()
    services = claim.count(b"LX*")
    fresh = itertools.cycle(
        [claim_837p(make_patient(seed), services=services).encode() for seed in range(500)]
    )
    for body in (claim, batch):
        inspection = inspector.inspect(body)
        assert inspection.format == X12 and inspection.contains_phi, inspection
        assert not redactor.redact(body, "", X12).error
    parse = yardstick()
    print_header()
    cases: list[tuple[str, Callable[[], object], float | None]] = [
        (f"inspect 837P ({len(claim)} B)", lambda: inspector.inspect(claim), 0.2),
        ("  a new patient each call", lambda: inspector.inspect(next(fresh)), 0.2),
        (f"redact 837P ({len(claim)} B)", lambda: redactor.redact(claim, "", X12), None),
        (f"inspect batch ({len(batch) / 1e6:.1f} MB)", lambda: inspector.inspect(batch), 50.0),
        (
            f"redact batch ({len(batch) / 1e6:.1f} MB)",
            lambda: redactor.redact(batch, "", X12),
            None,
        ),
    ]
    for name, run, target in cases:
        report(name, paired(run, parse), target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
