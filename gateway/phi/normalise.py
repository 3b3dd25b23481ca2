"""Text as the detectors read it: what a writer can put between the letters of a name or the
digits of an SSN without changing what a person reads.

- HTML character references (``&nbsp;``, ``&#49;``, ``&#x31;``, ``&amp;``) become the
  characters they stand for (one pass, as a browser reads them);
- format characters (Unicode category Cf: zero-width space and joiners, the soft hyphen, the
  bidirectional controls, the word joiner, a stray BOM) are dropped;
- compatibility forms are folded one character at a time (NFKC: fullwidth letters and
  digits, the no-break and other spaces, ligatures), and decimal digits of every script
  become ASCII digits.

Detection runs on the normalised text and reports spans of the text as sent: ``Normalised``
maps every span back. Texts that cannot change (ASCII without ``&``, the usual case) are not
copied at all.
"""

from __future__ import annotations

import bisect
import html
import re
import unicodedata

# Every format character (category Cf) of Unicode 15, as ranges: listing them from the
# database at import would read a million code points in every process
# (tests/unit/test_normalise.py holds the list to the database of the running Python).
FORMAT_RANGES = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
# Where a text may change: an entity, or any character that is not ASCII.
_ENTITY = r"&(?:\#[0-9]{1,7};?|\#[xX][0-9A-Fa-f]{1,6};?|[A-Za-z][A-Za-z0-9]{1,31};?)"
_ENTITIES = re.compile(_ENTITY)
_CHANGES = re.compile(rf"{_ENTITY}|[^\x00-\x7f]+")
_FORMAT = re.compile(f"[{FORMAT_RANGES}]")
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")


def unchanged(text: str) -> bool:
    """Is ``text`` its own normal form? True for ASCII without ``&``, and for other text that
    holds no entity, format character, compatibility form or non-ASCII digit."""
    if "&" in text and not all(
        html.unescape(m.group()) == m.group() for m in _ENTITIES.finditer(text)
    ):
        return False
    return text.isascii() or _folds_to_itself(text)


def _folds_to_itself(text: str) -> bool:
    """No format character, compatibility form or non-ASCII digit in ``text``."""
    return (
        unicodedata.is_normalized("NFKC", text)
        and _FORMAT.search(text) is None
        and _OTHER_DIGIT.search(text) is None
    )


def _fold(char: str) -> str:
    if _FORMAT.match(char):
        return ""
    folded = unicodedata.normalize("NFKC", char)
    if _OTHER_DIGIT.search(folded):
        folded = "".join(
            str(unicodedata.decimal(c)) if _OTHER_DIGIT.match(c) else c for c in folded
        )
    return folded


class Normalised:
    """The normal form of a text and the way back to the text as sent.

    The text is built from pieces; ``_at[i]`` is where piece i starts in the normal form,
    ``_source[i]`` where it starts in the original, ``_width[i]`` how many original
    characters it replaces (0: copied as it was, character for character)."""

    __slots__ = ("_at", "_source", "_width", "text")

    def __init__(self, original: str) -> None:
        pieces: list[str] = []
        at: list[int] = []
        source: list[int] = []
        width: list[int] = []
        done = 0  # original characters consumed
        size = 0  # normal-form characters written

        def copy(upto: int) -> None:
            nonlocal done, size
            if upto > done:
                pieces.append(original[done:upto])
                at.append(size)
                source.append(done)
                width.append(0)
                size += upto - done
                done = upto

        def replace(start: int, end: int, new: str) -> None:
            nonlocal done, size
            copy(start)
            if new:
                pieces.append(new)
                at.append(size)
                source.append(start)
                width.append(end - start)
                size += len(new)
            done = end

        for match in _CHANGES.finditer(original):
            start, end = match.span()
            if original[start] == "&":
                new = html.unescape(match.group())
                if new != match.group():
                    replace(start, end, "".join(_fold(c) for c in new))
                continue
            if _folds_to_itself(match.group()):
                continue  # accented letters, other scripts: read as they are
            for offset in range(start, end):
                char = original[offset]
                folded = _fold(char)
                if folded != char:
                    replace(offset, offset + 1, folded)
        copy(len(original))
        self.text = "".join(pieces)
        self._at = at
        self._source = source
        self._width = width

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the normal form's ``[start, end)``."""
        if end <= start:
            here = self._position(start)
            return here, here
        return self._position(start), self._position(end - 1, last=True)

    def spans(self, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """``span`` of each."""
        return [self.span(start, end) for start, end in spans]

    def _position(self, index: int, last: bool = False) -> int:
        if not self._at:
            return 0
        i = max(0, bisect.bisect_right(self._at, index) - 1)
        source, width = self._source[i], self._width[i]
        if width:  # a replaced piece: all of it
            return source + width if last else source
        position = source + index - self._at[i]
        return position + 1 if last else position


def normalised(text: str) -> Normalised | None:
    """The normal form of ``text``, or None when it is its own."""
    if unchanged(text):
        return None
    result = Normalised(text)
    return None if result.text == text else result
