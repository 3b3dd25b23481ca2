"""Safe Harbor rules shared by every redactor: ZIP3, year-only dates (or a per-patient date
shift), ages over 89, keyed pseudonyms, and what a de-identified value looks like (used to
verify redacted output before it leaves)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field

from gateway.phi.patterns import ISO_DATE_PREFIX, YEAR, ZIP_PLUS4

# 3-digit ZIP areas with 20,000 people or fewer: HHS (2000 census) and Microsoft (2010 census).
RESTRICTED_ZIP3 = frozenset(
    {
        "036",
        "059",
        "063",
        "102",
        "203",
        "205",
        "369",
        "556",
        "692",
        "790",
        "821",
        "823",
        "830",
        "831",
        "878",
        "879",
        "884",
        "890",
        "893",
    }
)
REDACTED = "REDACTED"
PSEUDONYM_PREFIX = "PSN"
_PSEUDONYM = re.compile(r"^PSN[A-Z2-7]{16}$")
_ZIP = re.compile(rf"^(\d{{3}})\d{{2}}{ZIP_PLUS4}$")
# Units that make a number an age (UCUM "a", and what senders write instead): an age of 90
# or more is an identifier (45 CFR 164.514(b)(2)(i)(C)).
AGE_UNITS = frozenset({"a", "yr", "yrs", "year", "years", "y"})


def is_old_age(number: float, unit: str) -> bool:
    """An age of 90 or more: ``unit`` (lower case, as sent) says years."""
    return number >= 90 and unit in AGE_UNITS


# Tokens a redacted value may still hold: the placeholder, pseudonyms, years; in addresses
# also ZIP3 areas and state/country codes.
_SAFE_ANYWHERE = r"REDACTED|PSN[A-Z2-7]{16}|\d{4}"
SAFE_TOKEN = re.compile(rf"^({_SAFE_ANYWHERE})$")
SAFE_ADDRESS_TOKEN = re.compile(rf"^({_SAFE_ANYWHERE}|\d{{3}}|[A-Za-z]{{2,3}})$")


_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_BASE32_PAIRS = tuple(a + b for a in _BASE32 for b in _BASE32)  # every 10-bit group


def base32_80(data: bytes) -> str:
    """``base64.b32encode`` of exactly 10 bytes (16 characters, no padding), without its
    pure-Python loop: a pseudonym is computed for every identifier of every message. The
    format must never change: pseudonyms stay stable across releases."""
    n = int.from_bytes(data, "big")
    pairs = _BASE32_PAIRS
    return (
        pairs[n >> 70]
        + pairs[(n >> 60) & 1023]
        + pairs[(n >> 50) & 1023]
        + pairs[(n >> 40) & 1023]
        + pairs[(n >> 30) & 1023]
        + pairs[(n >> 20) & 1023]
        + pairs[(n >> 10) & 1023]
        + pairs[n & 1023]
    )


def zip3(value: str) -> str:
    """ZIP (5 or 9 digits) → its first three digits, or 000 for a restricted area."""
    match = _ZIP.match(value.strip())
    if match is None:
        return "000"
    area = match.group(1)
    return "000" if area in RESTRICTED_ZIP3 else area


def is_pseudonym(value: str) -> bool:
    return bool(_PSEUDONYM.match(value))


def is_safe_token(value: str, address: bool = False) -> bool:
    return (SAFE_ADDRESS_TOKEN if address else SAFE_TOKEN).match(value) is not None


class KeyedHash:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer blocks hashed once: a message
    then costs two copies and two small updates (~1.7 us), where ``hmac.digest`` sets up
    OpenSSL's HMAC for every call (~4.4 us). Every identifier of every message is hashed."""

    _BLOCK = 64  # SHA-256's block size

    def __init__(self, key: bytes) -> None:
        if len(key) > self._BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(self._BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes([b ^ 0x36 for b in key]))
        self._outer = hashlib.sha256(bytes([b ^ 0x5C for b in key]))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


@dataclass
class Pseudonymizer:
    """Keyed pseudonyms: HMAC-SHA256 with the site secret. Same input, same pseudonym; without
    the secret (which never leaves the hospital) nobody can reverse or recompute them."""

    secret: bytes
    _hash: KeyedHash = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._hash = KeyedHash(self.secret)

    def pseudonym(self, kind: str, value: str) -> str:
        digest = self._hash.digest(f"{kind}\0{value}".encode())
        return PSEUDONYM_PREFIX + base32_80(digest[:10])

    def uuid(self, value: str) -> str:
        """A pseudonymous urn:uuid (keeps Bundle fullUrl/reference pairs valid and linked)."""
        digest = self._hash.digest(b"uuid\0" + value.encode()).hex()
        return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"

    def shift_days(self, patient_key: str, max_days: int) -> int:
        """A per-patient date shift in [-max_days, max_days], never 0, stable for that
        patient."""
        digest = self._hash.digest(b"shift\0" + patient_key.encode())
        days = int.from_bytes(digest[:4], "big") % (2 * max_days + 1) - max_days
        if days == 0 and max_days > 0:
            # No shift would leave the real dates: another byte picks one. (Only this case
            # is re-drawn, so every other patient keeps the shift earlier releases gave.)
            days = 1 + digest[4] % max_days
            days = days if digest[5] & 1 else -days
        return days


@dataclass
class DatePolicy:
    """Year only (Safe Harbor), or a consistent shift per patient (pseudonymisation)."""

    mode: str = "year"  # "year" | "shift"
    shift_days: int = 0
    reference_year: int = field(default_factory=lambda: dt.date.today().year)

    def year_of(self, value: str) -> str | None:
        match = ISO_DATE_PREFIX.match(value.strip())
        return match.group(1) if match else None

    def birth_year(self, value: str) -> str:
        """Birth dates: the year, unless that reveals an age of 90 or more (then nothing)."""
        year = self.year_of(value)
        if year is None or int(year) <= self.reference_year - 90:
            return ""
        return self.generalize(value)

    def generalize(self, value: str) -> str:
        """A date, dateTime or HL7 TS/DTM → year only, or shifted (keeping its precision)."""
        value = value.strip()
        if self.mode == "shift":
            shifted = self._shift(value)
            if shifted is not None:
                return shifted
        year = self.year_of(value)
        return year or ""

    def _shift(self, value: str) -> str | None:
        match = ISO_DATE_PREFIX.match(value)
        if match is None or match.group(3) is None:
            return None
        day = dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        moved = day + dt.timedelta(days=self.shift_days)
        compact = "-" not in value[:8]
        # Time of day is dropped with the shift: it can tie an event to a clock elsewhere.
        return moved.strftime("%Y%m%d" if compact else "%Y-%m-%d")


def is_generalized_date(value: str) -> bool:
    return bool(YEAR.match(value.strip())) or not value.strip()
