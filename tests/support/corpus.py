"""The shared labelled corpus (../shared/corpus), read through one loader."""

from __future__ import annotations

import csv
from pathlib import Path

CORPUS = Path(__file__).parents[3] / "shared" / "corpus"


def labelled() -> list[tuple[str, str]]:
    """(path, "phi" | "no-phi") for every labelled file; empty where the corpus is absent."""
    labels = CORPUS / "LABELS.tsv"
    if not labels.is_file():
        return []
    with labels.open() as f:
        return [
            (r[0], r[1]) for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")
        ]
