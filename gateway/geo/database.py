"""One MaxMind-format database: GeoIP2/GeoLite2 Country, City or Enterprise, the embedded DB-IP
Lite (converted to the GeoIP2-Country schema) or an ip-location-db country database (records
``{"country_code": "US"}``, such as the embedded geo-whois-asn-country), read with maxminddb.

maxminddb's records are read directly (about 4 µs a lookup here; geoip2's model objects cost
about 20 µs), taking ``country``, then ``registered_country``, then ``country_code``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import maxminddb


class GeoDatabaseError(Exception):
    """A geo database that cannot be opened or is not a country-bearing MaxMind database."""


class GeoDatabaseReader:
    def __init__(self, path: Path, *, answers_reserved: bool = False) -> None:
        self.path = path
        self.name = path.stem
        self.answers_reserved = answers_reserved
        try:
            self._reader = maxminddb.open_database(str(path))
        except (OSError, maxminddb.InvalidDatabaseError, ValueError) as exc:
            raise GeoDatabaseError(f"{path}: cannot open MaxMind database: {exc}") from None
        meta = self._reader.metadata()
        self.database_type: str = meta.database_type
        kind = self.database_type.lower()
        if not any(word in kind for word in ("city", "enterprise", "country")):
            self._reader.close()
            raise GeoDatabaseError(
                f"{path}: database type {self.database_type!r} carries no country "
                "(need a GeoIP2/GeoLite2 Country, City or Enterprise database)"
            )
        self._get: Callable[[str], object] = self._reader.get
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
            record = self._get(ip)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        code = _iso_code(record.get("country")) or _iso_code(record.get("registered_country"))
        if code is None:
            code = record.get("country_code")
        if not isinstance(code, str) or len(code) != 2 or code.upper() == "ZZ":
            return None
        return code.upper()

    @property
    def version(self) -> str:
        return self.build_time.date().isoformat()

    def describe(self) -> str:
        built = self.build_time.date().isoformat()
        text = f"{self.path} ({self.database_type}, built {built})"
        return f"{text} — {self.attribution}" if self.attribution else text

    def close(self) -> None:
        self._reader.close()


def _iso_code(place: object) -> str | None:
    if isinstance(place, dict):
        code = place.get("iso_code")
        if isinstance(code, str):
            return code
    return None
