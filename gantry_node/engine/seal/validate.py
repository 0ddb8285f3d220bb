"""Plausibility checks on decrypted original attributes that carry no digest of ours (sealed by
another tool). CMS EnvelopedData has no integrity check: a flipped ciphertext byte turns 16 bytes
of plaintext into random bytes. Random bytes almost never make a value that decodes in its
character set without control characters, or a UID, date or number made of the characters those
allow; real data that is merely non-conformant (a long LO, a lower-case CS) still passes, so an
authentic seal is never refused for the sender's sloppiness. A change inside a binary value
cannot be detected this way."""

from __future__ import annotations

import re
import warnings

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
# C0 and C1 controls, except the ones text values may hold (TAB, LF, FF, CR, ESC for ISO 2022)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f-\x9f]")
_CHARSETS = {
    "UI": re.compile(r"[0-9. ]*"),
    "DA": re.compile(r"[0-9 .\-]*"),
    "TM": re.compile(r"[0-9 .:\-]*"),
    "DT": re.compile(r"[0-9 .:+\-]*"),
    "IS": re.compile(r"[0-9 +\-]*"),
    "DS": re.compile(r"[0-9 .+\-eE]*"),
    "AS": re.compile(r"[0-9 DWMY]*"),
}


def check_values(ds: Dataset) -> None:
    from gantry_node.engine.seal.cms import SealError

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom only warns when bytes do not decode
        for tag in list(ds.keys()):
            label = f"({tag.group:04X},{tag.element:04X})"
            try:
                elem = ds[tag]
                if elem.VR == "SQ":
                    for item in elem.value or []:
                        check_values(item)
                    continue
                if elem.VR in _TEXT_VRS:
                    allowed = _CHARSETS.get(elem.VR)
                    for value in _strings(elem.value):
                        if _CONTROL.search(value) or (allowed is not None and not allowed.fullmatch(value)):
                            raise ValueError("implausible value")
            except SealError:
                raise
            except Exception:  # noqa: BLE001 -- any undecodable or implausible value: corrupt plaintext
                raise SealError(f"decrypted original attribute {label} is not a valid value "
                                "(wrong private key, or tampered content)") from None


def _strings(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    if isinstance(value, list | tuple | MultiValue):
        return [str(v) for v in value]
    return [str(value)]
