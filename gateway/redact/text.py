"""Free-text scrubbing: the identifiers a message's own structured fields held (contextual
de-identification), and the patterns no clinical note needs (SSN, phone, e-mail)."""

from __future__ import annotations

import re

SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
PHONE = re.compile(r"(?<!\d)(?:\+?1[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}(?!\d)")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
PATTERNS = (SSN, PHONE, EMAIL)
MASK = "[REDACTED]"
_MIN_LENGTH = 3
# Words too common to scrub everywhere they occur (they are not what identifies a person).
_COMMON = frozenset({"THE", "AND", "MR", "MRS", "MS", "DR", "JR", "SR", "III", "USA", "MRN"})


class ContextScrubber:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        value = value.strip()
        if (len(value) >= _MIN_LENGTH and value.upper() not in _COMMON and not value.isdigit()) or (
            value.isdigit() and len(value) >= 4
        ):
            self._values.add(value)
            self._pattern = None

    def add_date(self, value: str) -> None:
        """A date (HL7 TS or ISO): its spellings in notes are scrubbed too."""
        digits = re.sub(r"\D", "", value)[:8]
        if len(digits) == 8:
            year, month, day = digits[:4], digits[4:6], digits[6:]
            for spelling in (
                digits,
                f"{year}-{month}-{day}",
                f"{month}/{day}/{year}",
                f"{int(month)}/{int(day)}/{year}",
            ):
                self._values.add(spelling)
            self._pattern = None

    def values(self) -> set[str]:
        return set(self._values)

    def scrub(self, text: str) -> str:
        for pattern in PATTERNS:
            text = pattern.sub(MASK, text)
        if self._values:
            if self._pattern is None:
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile(
                    "|".join(rf"(?<!\w){re.escape(v)}(?!\w)" for v in ordered), re.IGNORECASE
                )
            text = self._pattern.sub(MASK, text)
        return text
