"""Free-text detector cost, in process: microseconds per 250-character note (with and without
identifiers) and MB/s over about 1 MB of clean operations text. Presidio, for comparison, costs
about 9 ms per 250-character note (issue 4).

"before" is ``gateway/phi/freetext.py`` as of ``--before`` (a git revision; default: the one
before issue 18's normalisation and relatives' names), "after" the working tree's, both run
interpreted from source in this process; "in use" is what the gateway runs (compiled when
``make native`` built it). Run: .venv/bin/python -m bench.freetext [--before REV]"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from gateway.phi.freetext import scan_text
from tests.support.clean_text import CLEAN_TEXTS
from tests.support.notes import csv_export, note
from tests.support.patients import make_patient

NOTE_CHARS = 250
ROOT = Path(__file__).resolve().parent.parent
SOURCE = "gateway/phi/freetext.py"
# The last commit before issue 18 changed what free text is read as.
BEFORE = "8bd0303"


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


def _module(name: str, source: str) -> ModuleType:
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, f"{name}.py", "exec"), module.__dict__)
    return module


def _versions(before: str) -> list[tuple[str, Callable[[str], object]]]:
    versions: list[tuple[str, Callable[[str], object]]] = []
    try:
        old = subprocess.run(
            ["git", "show", f"{before}:{SOURCE}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        versions.append(("before", _module("freetext_before", old).scan_text))
    except (subprocess.CalledProcessError, OSError, SyntaxError, ImportError) as exc:
        print(f"(before: {before} not readable here: {type(exc).__name__})")
    current = (ROOT / SOURCE).read_text(encoding="utf-8")
    versions.append(("after", _module("freetext_after", current).scan_text))
    versions.append(("in use", scan_text))
    return versions


def _relatives_note() -> str:
    return (
        "Spouse Aurelio Quillfeather requests callback re: discharge. Lives with daughter "
        "Mara and son Mateo Vintner; employer: Riverside Auto Parts. " + CLEAN_TEXTS[0]
    )[:NOTE_CHARS]


def _obfuscated_note() -> str:
    return (
        "Pati\u200bent:&nbsp;Aurelio Quill\u200bfeather, SSN \uff12\uff11\uff19-09-9999. "
        + CLEAN_TEXTS[0]
        + " "
        + CLEAN_TEXTS[1]
    )[:NOTE_CHARS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="git revision of the 'before' detectors")
    args = parser.parse_args()
    cases = [
        ("250-char note, identifiers", _phi_note()),
        ("250-char note, clean", _clean_note()),
        ("250-char note, no digit", ("Patient Safety Committee met and agreed. " * 8)[:250]),
        ("250-char note, relatives", _relatives_note()),
        ("250-char note, obfuscated", _obfuscated_note()),
        ("CSV export, 20 patients", csv_export([make_patient(i) for i in range(20)])),
    ]
    versions = _versions(args.before)
    header = "".join(f" {name + ' µs':>11}" for name, _ in versions)
    print(f"{'payload':<30} {'chars':>7}{header}  PHI (in use)")
    for name, text in cases:
        cells = "".join(
            f" {per_call_seconds(functools.partial(scan, text)) * 1e6:>11.1f}"
            for _, scan in versions
        )
        print(f"{name:<30} {len(text):>7}{cells}  {scan_text(text).contains_phi}")
    big = "\n\n".join(CLEAN_TEXTS) + "\n\n"
    big = big * (1_000_000 // len(big) + 1)
    for version, scan in versions:
        seconds = per_call_seconds(functools.partial(scan, big), seconds=3.0)
        print(
            f"{'clean text, large (' + version + ')':<30} {len(big):>7} {seconds * 1e3:>9.0f} ms"
            f"  ({len(big) / seconds / 1e6:.1f} MB/s)"
        )
    # The shared VMs this runs on are often busy: a pure-Python reference loop says how busy.
    reference = per_call_seconds(lambda: sum(range(100_000)), seconds=0.5)
    print(f"(reference: sum(range(100000)) took {reference * 1e3:.2f} ms: compare runs by it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
