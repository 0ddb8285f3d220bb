"""The SOP Instance UID a received data set gives itself, read without decoding the rest.

A C-STORE names its instance twice: the request's Affected SOP Instance UID and the data
set's own (0008,0018). Duplicates are keyed on the first; the data set is what is processed
and forwarded. The SCP refuses a data set whose own UID differs, so that one instance cannot
be stored (or dropped as a duplicate) under another's UID.

Only the elements before (0008,0018) are parsed, from the first PREFIX bytes (inflated first
for the deflated syntax); a data set that puts more than that in front of its UID is parsed
further from the whole buffer.
"""

from __future__ import annotations

import io
import zlib

from pydicom.filereader import read_dataset
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

SOP_INSTANCE_UID = Tag(0x0008, 0x0018)
PREFIX = 64 * 1024


def _stop(tag, vr, length) -> bool:
    return tag > SOP_INSTANCE_UID


def dataset_sop_instance_uid(data: io.BytesIO, transfer_syntax: str) -> str | None:
    """The data set's SOP Instance UID (stripped), or None if it has none or cannot be read."""
    view = data.getbuffer()
    try:
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            head = inflater.decompress(view, PREFIX)
            whole = len(head) < PREFIX
        else:
            head, whole = bytes(view[:PREFIX]), len(view) <= PREFIX
        uid = _read(head, transfer_syntax)
        if uid is None and not whole:
            if transfer_syntax == DeflatedExplicitVRLittleEndian:
                uid = _read(zlib.decompress(view, -zlib.MAX_WBITS), transfer_syntax)
            else:
                data.seek(0)
                uid = _read_stream(data, transfer_syntax)
        return uid
    except (zlib.error, ValueError, EOFError, OverflowError, NotImplementedError, KeyError, TypeError):
        return None
    finally:
        view.release()
        data.seek(0)


def _read(head: bytes, transfer_syntax: str) -> str | None:
    return _read_stream(io.BytesIO(head), transfer_syntax)


def _read_stream(fp: io.BytesIO, transfer_syntax: str) -> str | None:
    implicit = transfer_syntax == ImplicitVRLittleEndian
    little = transfer_syntax != ExplicitVRBigEndian
    try:
        ds = read_dataset(fp, implicit, little, stop_when=_stop)
    except EOFError:
        return None
    if SOP_INSTANCE_UID not in ds:
        return None
    value = ds[SOP_INSTANCE_UID].value
    if value is None or isinstance(value, list | tuple) or not str(value).strip("\0 "):
        return None
    return str(value).strip("\0 ")
