"""Refresh a provider ranges file from lists an admin downloaded (``phi-gateway geo update``)
or from the copies in ``../shared/geo`` (``geo_db/build_cloud_ranges.py``).

Providers not named keep their entries from the existing file; a named provider's entries are
replaced whole. Regions are mapped with the table stored in the existing file unless a new
table is given; a region with no row stops the update (nothing is written).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from gateway.errors import ProviderDataError, RangesError
from gateway.geo.providers import RegionRow, read_provider, read_region_table
from gateway.geo.ranges import RangeSet


def update_ranges(
    output: Path,
    files: Mapping[str, Path],
    *,
    base: Path | None = None,
    region_table: Path | None = None,
    dates: Mapping[str, dt.date] | None = None,
) -> RangeSet:
    """Build and write the ranges file; raises ProviderDataError or RangesError."""
    current = RangeSet.read(base) if base is not None and base.is_file() else RangeSet()
    regions: list[RegionRow] = (
        read_region_table(region_table) if region_table is not None else list(current.regions)
    )
    if not regions:
        raise ProviderDataError("no region → country table: give one (--regions FILE)")
    unmapped: list[str] = []
    for provider, path in files.items():
        try:
            fresh = read_provider(provider, path, regions, (dates or {}).get(provider))
        except ProviderDataError as exc:
            if not exc.unmapped:
                raise
            unmapped += exc.unmapped
            continue
        current.replace_provider(provider, fresh)
    if unmapped:
        raise ProviderDataError(
            f"{len(unmapped)} region(s) have no country in the region table; add rows "
            "(provider, region, country or ZZ) and give it with --regions",
            unmapped,
        )
    current.regions = regions
    if not current.entries:
        raise RangesError("no provider prefixes to write")
    current.write(output)
    return current
