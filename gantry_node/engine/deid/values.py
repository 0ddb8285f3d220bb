"""Value-level helpers: dummy values by VR, and date shifting."""

from __future__ import annotations

import datetime as dt

from pydicom.multival import MultiValue

TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UT", "UC", "PN"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
NUMBER_VRS = frozenset({"FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"})
# Attributes of coded entries (PS3.3 8.8): vocabulary, not free text or patient dates, so they
# are neither dummied/cleaned inside D/C sequences nor date-shifted.
CODE_ATTRIBUTES = frozenset({
    0x00080100, 0x00080102, 0x00080103, 0x00080104, 0x00080105, 0x00080106, 0x00080107,
    0x0008010B, 0x0008010D, 0x0008010F, 0x00080117, 0x00080118, 0x00080119, 0x00080120,
    0x00080121, 0x00080122, 0x00080123, 0x00080124, 0x00080129, 0x0008010C,
})
MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "DS": 16, "IS": 12}

_DUMMY = {
    "AE": "ANONYMOUS",
    "AS": "000D",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UR": "http://example.invalid/",
    "UT": "ANONYMIZED",
}


def dummy_value(vr: str):
    """A non-empty value of the VR that identifies no one (the D action)."""
    if vr in _DUMMY:
        return _DUMMY[vr]
    if vr in NUMBER_VRS:
        return 0
    if vr in BINARY_VRS:
        return b"\x00\x00"
    if vr == "AT":
        return 0
    raise ValueError(f"no dummy value for VR {vr}")


def empty_value(vr: str):
    """The zero-length value of the VR (the Z action)."""
    if vr == "SQ":
        return []
    if vr in BINARY_VRS:
        return b""
    return None if vr in NUMBER_VRS or vr == "AT" else ""


class UnparsableDate(ValueError):
    pass


def shift_da(value: str, offset: dt.timedelta) -> str:
    text = value.strip()
    if not text:
        return text
    try:
        day = dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        raise UnparsableDate(value) from None
    if len(text) != 8:
        raise UnparsableDate(value)
    return (day + offset).strftime("%Y%m%d")


def shift_dt(value: str, offset: dt.timedelta) -> str:
    """Shift the date part of a DT; time, fraction and UTC offset stay. Reduced precision
    (YYYY, YYYYMM) is shifted from the first day of the period and cut back to that precision."""
    text = value.strip()
    if not text:
        return text
    core, sign, zone = text, "", ""
    for s in "+-":
        if s in text[4:]:
            i = text.index(s, 4)
            core, sign, zone = text[:i], s, text[i + 1:]
            break
    digits = core[:8]
    if not digits.isdigit() or len(digits) not in (4, 6, 8):
        raise UnparsableDate(value)
    padded = digits + "0101"[len(digits) - 4:] if len(digits) < 8 else digits
    try:
        day = dt.datetime.strptime(padded, "%Y%m%d").date()
    except ValueError:
        raise UnparsableDate(value) from None
    shifted = (day + offset).strftime("%Y%m%d")[: len(digits)]
    return shifted + core[8:] + (sign + zone if sign else "")


def as_list(value) -> list:
    """An element value as a list of its values (a single value, or a multi-valued one)."""
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]  # str, bytes, PersonName (iterable, but one value), numbers, None
