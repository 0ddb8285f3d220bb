"""The SOP Instance UID a received data set gives itself, read without decoding the rest.

A C-STORE names its instance twice: the request's Affected SOP Instance UID and the data
set's own (0008,0018). Duplicates are keyed on the first; the data set is what is processed
and forwarded. The SCP refuses a data set whose own UID differs, so that one instance cannot
be stored (or dropped as a duplicate) under another's UID.

Only the elements before (0008,0018) are parsed, from the first PREFIX bytes of the file
(inflated first for the deflated syntax); a data set that puts more than that in front of its
UID is parsed further, read from the file as parsing goes (never the whole data set at once).
"""

from __future__ import annotations

import io
import zlib
from typing import BinaryIO

from pydicom.filereader import read_dataset
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

SOP_INSTANCE_UID = Tag(0x0008, 0x0018)
PREFIX = 64 * 1024


def _stop(tag, vr, length) -> bool:
    return tag > SOP_INSTANCE_UID


def dataset_sop_instance_uid(fp: BinaryIO, transfer_syntax: str) -> str | None:
    """The data set's SOP Instance UID (stripped), or None if it has none or cannot be read.
    `fp` is a binary file positioned at the start of the data set (in the inbox: just after
    the File Meta Information); its position afterwards is unspecified."""
    start = fp.tell()
    try:
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            head = b""
            while len(head) < PREFIX and not inflater.eof:
                block = inflater.unconsumed_tail or fp.read(PREFIX)
                if not block:
                    break
                head += inflater.decompress(block, PREFIX - len(head))
            whole = len(head) < PREFIX
        else:
            head = fp.read(PREFIX)
            whole = len(head) < PREFIX
        uid = _read(head, transfer_syntax)
        if uid is None and not whole:
            fp.seek(start)
            stream = _Inflating(fp) if transfer_syntax == DeflatedExplicitVRLittleEndian else fp
            uid = _read_stream(stream, transfer_syntax)
        return uid
    except (zlib.error, ValueError, EOFError, OverflowError, NotImplementedError, KeyError, TypeError, OSError):
        return None


class _Inflating(io.RawIOBase):
    """A deflated data set read as its inflated bytes, a block at a time (read_dataset only reads)."""

    def __init__(self, fp: BinaryIO):
        self._fp = fp
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buffer = b""
        self._position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buffer) < size) and not self._inflater.eof:
            block = self._fp.read(PREFIX)
            if not block:
                break
            self._buffer += self._inflater.decompress(block)
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        self._position += len(out)
        return out


def _read(head: bytes, transfer_syntax: str) -> str | None:
    return _read_stream(io.BytesIO(head), transfer_syntax)


def _read_stream(fp, transfer_syntax: str) -> str | None:
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
