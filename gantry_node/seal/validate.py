"""Strict checks on decrypted original attributes. CMS EnvelopedData carries no integrity check:
a wrong key that slips past the padding check, or a flipped ciphertext byte, yields random bytes
in the plaintext. Random bytes almost never form valid DICOM values, so every value is decoded
and validated against its VR before anything is restored."""

from __future__ import annotations

import warnings

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import validate_value

_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
_CONTROL_OK = {"\n", "\r", "\f", "\t", "\x1b"}
RAISE = 2  # pydicom.config.RAISE


def check_values(ds: Dataset) -> None:
    from gantry_node.seal.cms import SealError

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an undecodable character is a warning in pydicom
        for tag in list(ds.keys()):
            label = f"({tag.group:04X},{tag.element:04X})"
            try:
                elem = ds[tag]
                if elem.VR == "SQ":
                    for item in elem.value or []:
                        check_values(item)
                    continue
                if elem.VR in _TEXT_VRS:
                    for value in _strings(elem.value):
                        if any(ch < " " and ch not in _CONTROL_OK for ch in value):
                            raise ValueError("control character")
                        validate_value(elem.VR, value, RAISE)
            except SealError:
                raise
            except Exception:  # noqa: BLE001 -- any invalid value means corrupt plaintext
                raise SealError(f"decrypted original attribute {label} is not a valid value "
                                "(wrong key, or tampered content)") from None


def _strings(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    if isinstance(value, list | tuple | MultiValue):
        return [str(v) for v in value]
    return [str(value)]
