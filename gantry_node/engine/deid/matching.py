"""Where an instance's identity values occur in text: the one matcher the engine (clean), the
PHI audit (scan) and verification use.

Text is compared as text (DESIGN principle 8). Values are decoded with the instance's Specific
Character Set (pydicom does that, ISO 2022 escape sequences and every PN component group
included); both sides are put in Unicode normal form NFKC and case-folded, so "MÜLLER" matches
"Müller", "ＤＯＥ" matches "Doe" and "STRASSE" matches "Straße". Names match part by part, so
the order of the parts does not matter.

Verification also searches the encoded bytes, for each value encoded in every character set
the instance declares (and UTF-8 and Latin-1): `byte_forms`. A value the decoder skipped (an
element read as UN, a private block kept as bytes) cannot slip through that way.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from pydicom.charset import convert_encodings

# Scripts written without spaces between words: a name part there matches inside a longer run
# of characters, and two characters are distinctive enough to look for.
_UNSPACED = re.compile(
    "[\u2e80-\u2fff\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\uff66-\uff9f\U00020000-\U0002ffff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]"
)
_ESCAPE = re.compile(rb"\x1b[\x20-\x2f]+[\x30-\x7e]")  # ISO 2022 designation sequences
# Half-width voiced sound marks: NFKC joins them to the kana before them, so they fold with it.
_JOINING = frozenset("\uff9e\uff9f")


def fold(text: str) -> str:
    """NFKC, then Unicode case folding: the form both sides are compared in. Turkish dotted
    and dotless i fold to i as well ("YILMAZ" and "Yılmaz" are one name)."""
    if text.isascii():
        return text.lower()
    return _turkish_i(unicodedata.normalize("NFKC", text).casefold())


def _turkish_i(folded: str) -> str:
    return folded.replace("i\u0307", "i").replace("\u0131", "i") if "\u0131" in folded or "\u0307" in folded \
        else folded


def fold_mapped(text: str) -> tuple[str, list[int]]:
    """`fold(text)` and, for each of its characters, the index in `text` it came from, so that
    a span found in the folded text replaces the right characters of the original. A base
    character is folded together with the combining marks that follow it."""
    if text.isascii():
        return text.lower(), list(range(len(text) + 1))
    out: list[str] = []
    origin: list[int] = []
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        while j < n and (unicodedata.combining(text[j]) or text[j] in _JOINING):
            j += 1
        piece = _turkish_i(unicodedata.normalize("NFKC", text[i:j]).casefold())
        out.append(piece)
        origin += [i] * len(piece)
        i = j
    origin.append(n)
    return "".join(out), origin


def unspaced(text: str) -> bool:
    return _UNSPACED.search(text) is not None


def significant(part: str) -> bool:
    """Whether a name part is worth looking for: three characters, or two in a script written
    without spaces (Chinese, Japanese, Korean names are often two characters long)."""
    return len(part) >= 3 or (len(part) == 2 and unspaced(part))


@dataclass(frozen=True)
class Needle:
    what: str  # "patient name", "patient name part", "patient or order id", "birth date"
    value: str  # as found in the original (PHI: never logged)

    @property
    def folded(self) -> str:
        return fold(self.value)


class Matcher:
    """Finds a set of needles in decoded text. Build one per instance (cheap) and reuse it."""

    def __init__(self, needles: Iterable[Needle]) -> None:
        self.needles = tuple(n for n in needles if n.folded)
        self._patterns = [(n.what, _pattern(n.what, n.folded)) for n in self.needles]
        self._folded = [n.folded for n in self.needles]
        self.ascii = [f.encode("ascii") for f in self._folded if f.isascii()]

    def __bool__(self) -> bool:
        return bool(self.needles)

    def spans(self, text: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, what) of every needle in `text`, in `text`'s own coordinates."""
        folded, origin = fold_mapped(text)
        for (what, pattern), needle in zip(self._patterns, self._folded, strict=True):
            if needle not in folded:
                continue
            for m in pattern.finditer(folded):
                yield origin[m.start()], origin[m.end()], what

    def found(self, text: str) -> list[Needle]:
        """The needles that occur in `text`."""
        folded = fold(text)
        return [n for n, f, (_, p) in zip(self.needles, self._folded, self._patterns, strict=True)
                if f in folded and p.search(folded)]

    def holds(self, text: str) -> bool:
        folded = fold(text)
        return any(f in folded and p.search(folded)
                   for f, (_, p) in zip(self._folded, self._patterns, strict=True))

    def maybe_in_ascii(self, data: bytes) -> bool:
        """A cheap first test of an ASCII byte value (lower-cased: folding ASCII is lowering)."""
        lowered = data.lower()
        return any(n in lowered for n in self.ascii)


def _pattern(what: str, folded: str) -> re.Pattern[str]:
    """Names match as whole words ("pre" is not in "predecessor"), except at an edge written in
    an unspaced script; all-digit IDs and dates as whole numbers; other IDs anywhere."""
    body = re.escape(folded)
    if what.startswith("patient name"):
        head = "" if unspaced(folded[0]) else r"(?<![^\W\d_])"
        tail = "" if unspaced(folded[-1]) else r"(?![^\W\d_])"
        return re.compile(head + body + tail)
    if what == "birth date" or folded.isdigit():
        return re.compile(rf"(?<!\d){body}(?!\d)")
    return re.compile(body)


# -- bytes -----------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def python_encodings(specific_character_set: tuple[str, ...]) -> tuple[str, ...]:
    """The Python codecs of a Specific Character Set, then UTF-8 and Latin-1, without repeats."""
    try:
        declared = convert_encodings(list(specific_character_set) or [""])
    except Exception:  # noqa: BLE001 -- an unknown term: pydicom falls back to its default
        declared = []
    out: list[str] = []
    for enc in [*declared, "utf_8", "latin_1"]:
        if enc not in out:
            out.append(enc)
    return tuple(out)


def byte_forms(value: str, encodings: Iterable[str]) -> set[bytes]:
    """`value` as it could stand in the encoded bytes: as written, upper, lower and title case,
    NFC and NFKC, in each encoding; lower-cased with bytes.lower() (as the searched bytes are).
    For ISO 2022 codecs the designation escapes are left out and the longest run between them
    kept: in the data the run may follow text in the same character set without a new escape."""
    return set(_byte_forms(value, tuple(encodings)))


@lru_cache(maxsize=1024)  # pure; the same patient's values are searched in every instance
def _byte_forms(value: str, encodings: tuple[str, ...]) -> frozenset[bytes]:
    forms = {value, value.upper(), value.lower(), value.title(),
             unicodedata.normalize("NFC", value), unicodedata.normalize("NFKC", value)}
    out: set[bytes] = set()
    for enc in encodings:
        for form in forms:
            try:
                data = form.encode(enc)
            except (UnicodeError, LookupError):
                continue
            if b"\x1b" in data:
                runs = [r for r in _ESCAPE.split(data) if r]
                if not runs:
                    continue
                data = max(runs, key=len)
            if data:
                out.add(data.lower())
    return frozenset(out)
