"""One MaxMind-format database (GeoIP2/GeoLite2 Country, City or Enterprise, or the embedded
DB-IP Lite converted to the GeoIP2-Country schema), read through geoip2."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import geoip2.database
import geoip2.errors
import geoip2.models
import maxminddb


class GeoDatabaseError(Exception):
    """A geo database that cannot be opened or is not a country-bearing MaxMind database."""


class GeoDatabaseReader:
    def __init__(self, path: Path, *, answers_reserved: bool = False) -> None:
        self.path = path
        self.name = path.stem
        self.answers_reserved = answers_reserved
        try:
            self._reader = geoip2.database.Reader(str(path))
        except (OSError, maxminddb.InvalidDatabaseError, ValueError) as exc:
            raise GeoDatabaseError(f"{path}: cannot open MaxMind database: {exc}") from None
        meta = self._reader.metadata()
        self.database_type: str = meta.database_type
        self._lookup: Callable[[str], geoip2.models.Country]
        if "City" in self.database_type:
            self._lookup = self._reader.city
        elif "Enterprise" in self.database_type:
            self._lookup = self._reader.enterprise
        elif "Country" in self.database_type:
            self._lookup = self._reader.country
        else:
            raise GeoDatabaseError(
                f"{path}: database type {self.database_type!r} carries no country "
                "(need a GeoIP2/GeoLite2 Country, City or Enterprise database)"
            )
        self.build_time = dt.datetime.fromtimestamp(meta.build_epoch, tz=dt.UTC)
        self.attribution = ""
        self._read_sidecar(path.with_suffix(".json"))

    def _read_sidecar(self, sidecar: Path) -> None:
        """The embedded database records its upstream build date and attribution beside it."""
        if not sidecar.is_file():
            return
        try:
            info = json.loads(sidecar.read_text(encoding="utf-8"))
            if build_date := info.get("build_date"):
                self.build_time = dt.datetime.fromisoformat(build_date).replace(tzinfo=dt.UTC)
            self.attribution = str(info.get("attribution", ""))
        except (OSError, ValueError, AttributeError) as exc:
            raise GeoDatabaseError(f"{sidecar}: unreadable metadata: {exc}") from None

    def country(self, ip: str) -> str | None:
        """ISO country code for an address, or None when the database has no answer."""
        try:
            record = self._lookup(ip)
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return None
        code = record.country.iso_code or record.registered_country.iso_code
        return code.upper() if code else None

    def describe(self) -> str:
        built = self.build_time.date().isoformat()
        text = f"{self.path} ({self.database_type}, built {built})"
        return f"{text} — {self.attribution}" if self.attribution else text

    def close(self) -> None:
        self._reader.close()
