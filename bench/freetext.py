"""Free-text detector cost, in process: microseconds per 250-character note (with and without
identifiers) and MB/s over about 1 MB of clean operations text. Presidio, for comparison, costs
about 9 ms per 250-character note (issue 4). Run: .venv/bin/python -m bench.freetext"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from collections.abc import Callable

from gateway.phi.freetext import scan_text
from tests.support.clean_text import CLEAN_TEXTS
from tests.support.notes import csv_export, note
from tests.support.patients import make_patient

NOTE_CHARS = 250


def per_call_seconds(run: Callable[[], object], seconds: float = 1.0) -> float:
    """Median seconds per call over batches of calls lasting about ``seconds`` in total."""
    run()
    batch = 100
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        for _ in range(batch):
            run()
        samples.append((time.perf_counter() - start) / batch)
    return statistics.median(samples)


def _clean_note() -> str:
    return " ".join(CLEAN_TEXTS[:6])[:NOTE_CHARS]


def _phi_note() -> str:
    text = note(0).text
    return (text + " " + CLEAN_TEXTS[0] + " " + CLEAN_TEXTS[1])[:NOTE_CHARS]


def main() -> int:
    cases = [
        ("250-char note, identifiers", _phi_note()),
        ("250-char note, clean", _clean_note()),
        ("250-char note, no digit", ("Patient Safety Committee met and agreed. " * 8)[:250]),
        ("CSV export, 20 patients", csv_export([make_patient(i) for i in range(20)])),
    ]
    print(f"{'payload':<30} {'chars':>7} {'µs/scan':>9}  PHI")
    for name, text in cases:
        seconds = per_call_seconds(functools.partial(scan_text, text))
        phi = scan_text(text).contains_phi
        print(f"{name:<30} {len(text):>7} {seconds * 1e6:>9.1f}  {phi}")
    big = "\n\n".join(CLEAN_TEXTS) + "\n\n"
    big = big * (1_000_000 // len(big) + 1)
    seconds = per_call_seconds(lambda: scan_text(big), seconds=3.0)
    print(
        f"{'clean text, large':<30} {len(big):>7} {seconds * 1e6:>9.0f}  "
        f"{scan_text(big).contains_phi}  ({len(big) / seconds / 1e6:.1f} MB/s)"
    )
    # The shared VMs this runs on are often busy: a pure-Python reference loop says how busy.
    reference = per_call_seconds(lambda: sum(range(100_000)), seconds=0.5)
    print(f"(reference: sum(range(100000)) took {reference * 1e3:.2f} ms: compare runs by it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
