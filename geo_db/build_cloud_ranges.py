#!/usr/bin/env python3
"""Build the embedded cloud-provider ranges, ``geo_db/cloud-ranges.bin``, from the providers'
published lists in ``../shared/geo`` (AWS, GCP, Azure, Oracle, Cloudflare) and its region →
country table. The inputs are read, not copied: only the compiled ranges file and a JSON
summary beside it (dates, sha256s, counts) are committed.

Usage: ``.venv/bin/python geo_db/build_cloud_ranges.py [--from DIR] [--output FILE]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

from gateway.errors import ProviderDataError, RangesError
from gateway.geo.update import update_ranges

HERE = Path(__file__).resolve().parent
DEFAULT_INPUT = HERE.parent.parent / "shared" / "geo"
DEFAULT_OUTPUT = HERE / "cloud-ranges.bin"
FILES = {
    "aws": "aws-ip-ranges.json",
    "gcp": "gcp-cloud.json",
    "azure": "azure-servicetags.json",
    "oracle": "oracle-public_ip_ranges.json",
    "cloudflare": "cloudflare-ips.txt",
}
# Azure's and Cloudflare's files carry no date: the snapshot commit dates from
# ../shared/geo/SOURCES.md (Azure changeNumber 375; Cloudflare's last change).
UNDATED = {"azure": dt.date(2025, 11, 6), "cloudflare": dt.date(2026, 5, 12)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--from", dest="source", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    source: Path = args.source
    output: Path = args.output
    try:
        ranges = update_ranges(
            output,
            {provider: source / name for provider, name in FILES.items()},
            region_table=source / "region-country.tsv",
            dates=UNDATED,
        )
    except (ProviderDataError, RangesError) as exc:
        print(f"build_cloud_ranges: {exc}", file=sys.stderr)
        for region in getattr(exc, "unmapped", ()):
            print(f"  unmapped: {region}", file=sys.stderr)
        return 1
    summary = {
        "built_from": "providers' published range lists, copies described in shared/geo/SOURCES.md",
        "sources": {name: info.to_json() for name, info in sorted(ranges.sources.items())},
        "region_rows": len(ranges.regions),
        "region_rows_guessed": sum(1 for row in ranges.regions if row[3]),
        "prefixes": len(ranges.entries),
        "output_sha256": hashlib.sha256(output.read_bytes()).hexdigest(),
        "output_bytes": output.stat().st_size,
    }
    output.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {output} ({summary['output_bytes']} bytes, {summary['prefixes']} prefixes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
