"""One MaxMind-format database read through geoip2: a GeoIP2/GeoLite2 Country, City or
Enterprise database, or one converted to the GeoIP2-Country schema (the embedded DB-IP Lite and
geo-whois-asn-country; ``geo_db/build_geowhois.py`` converts any ip-location-db country file).

The geoip2 method is chosen once, at open, from the metadata's ``database_type`` (geoip2's own
rule: ``country()`` for a type naming Country, ``city()`` for City, ``enterprise()`` for
Enterprise); a lookup takes ``country.iso_code``, then ``registered_country.iso_code``.
Building geoip2's model objects costs about 15 µs a lookup (maxminddb's bare record: 6 µs); the
locator caches the combined answer per address, so only an address's first lookup pays it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import geoip2.database
import geoip2.errors
import geoip2.models
from maxminddb import InvalidDatabaseError

from gateway.errors import GeoDatabaseError

# geoip2 accepts a method when its word is part of the database type (case-sensitive).
_METHODS = ("Enterprise", "City", "Country")
# Public addresses a country database knows: at open, at least one answer must carry a country
# (catches a file whose type says Country but whose records are in another schema).
_PROBES = ("8.8.8.8", "1.1.1.1", "9.9.9.9", "2001:4860:4860::8888", "2606:4700:4700::1111")
_CONVERT = (
    "an ip-location-db country database (records {'country_code': ..}) can be converted: "
    "python geo_db/build_geowhois.py --input FILE --output NEW.mmdb (docs/geo.md)"
)


class GeoDatabaseReader:
    def __init__(self, path: Path, *, answers_reserved: bool = False) -> None:
        self.path = path
        self.name = path.stem
        self.answers_reserved = answers_reserved
        try:
            self._reader = geoip2.database.Reader(str(path))
        except (OSError, InvalidDatabaseError, ValueError) as exc:
            raise GeoDatabaseError(f"{path}: cannot open MaxMind database: {exc}") from None
        meta = self._reader.metadata()
        self.database_type: str = meta.database_type
        try:
            self._lookup = self._method()
            self._check_records()
        except GeoDatabaseError:
            self._reader.close()
            raise
        self.build_time = dt.datetime.fromtimestamp(meta.build_epoch, tz=dt.UTC)
        self.attribution = ""
        self._read_sidecar(path.with_suffix(".json"))

    def _method(self) -> Callable[[str], geoip2.models.Country]:
        """The geoip2 reader method for this database type (geoip2 refuses any other)."""
        word = next((w for w in _METHODS if w in self.database_type), None)
        if word == "Enterprise":
            return self._reader.enterprise
        if word == "City":
            return self._reader.city
        if word == "Country":
            return self._reader.country
        raise GeoDatabaseError(
            f"{self.path}: geoip2 cannot read a country from a {self.database_type!r} database "
            "(need a GeoIP2/GeoLite2 Country, City or Enterprise database, or one in their "
            f"schema whose type names Country, City or Enterprise); {_CONVERT}"
        )

    def _check_records(self) -> None:
        found = 0
        for probe in _PROBES:
            try:
                model = self._lookup(probe)
            except (geoip2.errors.AddressNotFoundError, ValueError):
                continue
            if model.country.iso_code or model.registered_country.iso_code:
                return
            found += 1
        if found:
            raise GeoDatabaseError(
                f"{self.path}: {self.database_type!r} records carry no country.iso_code or "
                f"registered_country.iso_code (asked {', '.join(_PROBES)}); {_CONVERT}"
            )

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
            model = self._lookup(ip)
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return None  # not in the database; not an address; IPv6 in an IPv4-only file
        code = model.country.iso_code or model.registered_country.iso_code
        if not code or len(code) != 2 or code.upper() == "ZZ":
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
