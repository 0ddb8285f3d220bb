"""Bits of Pixel Data outside the stored value: embedded overlays and stray bits.

Old modalities put overlays (and sometimes text) into the unused high bits of each pixel cell
(Overlay Bits Allocated 16, Overlay Bit Position 12-15, no Overlay Data). De-identification
removes the 60xx group, but the bits stay in the stored pixel cells, and pydicom's pixel_array
masks them, so a check of decoded pixels never sees them.

What "clear" means (PS3.5 8.1.1: the bits of a pixel cell outside Bits Stored are not part of
the pixel sample value and their content cannot be assumed): every cell is rewritten to the
canonical form of its stored value, the form pydicom's own correction produces
(`pydicom.pixels.decoders.base._correct_unused_bits`: shift left by Bits Allocated - Bits
Stored, then back):

    unsigned (Pixel Representation 0): the bits above High Bit are 0;
    signed (Pixel Representation 1):   the bits above High Bit are copies of bit High Bit, the
                                       sign extension of the stored value.

Bits 0..High Bit never change, so the value as pydicom and dcmtk interpret it (both mask and
sign-extend from the high bit) is identical; a signed cell keeps the same value also for a
reader that ignores Bits Stored and reads the whole cell as a two's complement integer (which
zeroing would break: -5 stored in 12 bits with zeroed high bits reads as 4091). Accepting either
zeros or sign extension in a signed cell would leave one bit of overlay per negative pixel, so
only the canonical form counts as clean; a writer that zeroes the high bits of negative values
gets its cells rewritten, with the same values.

An embedded overlay that the ORIGINAL's 60xx elements declare (Overlay Bits Allocated != 1 or
Overlay Bit Position != 0, and no Overlay Data in that group) always has its bit plane
cleared, even when the plane lies inside Bits Stored (old data that says Bits Stored 16 with an
overlay in bit 15): there the plane is the overlay, not image.

Compressed data: a JPEG, JPEG-LS or JPEG 2000 codestream whose declared precision is at most
Bits Stored cannot hold such bits and is not decoded (the precision is read from the frame
headers). Otherwise lossless syntaxes are decoded with the unused bits as stored, cleared and
re-encoded losslessly (pixels.codec.encode). Lossy syntaxes with a bit set outside the stored
value are NOT cleaned: the lossy coder spread the overlay's sharp edges into the stored bits of
neighbouring pixels (ringing, quantisation), so clearing the high bits would leave a faint copy
of the overlay text in the image. Such an instance is quarantined (fail closed). A lossy
instance whose pixels have no such bit set passes unchanged (its codec could not carry them).

Everything here is pure: Dataset / ndarray in, counts and arrays out. Messages name
attributes, never their values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import get_j2k_parameters

from gantry_node.engine.pixels.codec import (
    LOSSY_SYNTAXES,
    Decoded,
    PixelDecodeError,
    decode,
    encode,
    syntax_name,
    transfer_syntax,
)

OVERLAY_GROUPS = range(0x6000, 0x6020, 2)
JPEG_FAMILY = {uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1,
               uid.JPEGLSLossless, uid.JPEGLSNearLossless}
J2K_FAMILY = {uid.JPEG2000Lossless, uid.JPEG2000, uid.JPEG2000MCLossless, uid.JPEG2000MC,
              uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL, uid.HTJ2K}
# SOF0-3, 5-7, 9-11, 13-15 (not DHT C4, JPG C8, DAC CC) and JPEG-LS SOF55 (F7)
SOF_MARKERS = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC} | {0xF7}
NATIVE_DTYPES = {8: "u1", 16: "u2", 32: "u4", 64: "u8"}


class HighBitsError(Exception):
    """The pixel cells cannot be checked or cleaned safely; the instance must be quarantined.
    The message names attributes and the transfer syntax, never a value."""


@dataclass
class Layout:
    bits_allocated: int
    bits_stored: int
    signed: bool
    planes: tuple[int, ...] = ()   # declared embedded overlay planes (bit positions)

    @property
    def shift(self) -> int:
        return self.bits_allocated - self.bits_stored

    @property
    def wanted(self) -> bool:
        return self.shift > 0 or bool(self.planes)


@dataclass
class Cleared:
    frames: int = 0                 # frames with at least one cell rewritten
    values: int = 0                 # cells rewritten
    planes: list[int] = field(default_factory=list)
    transfer_syntax: str = ""       # written, when something was rewritten

    def notes(self) -> dict:
        out: dict = {"high_bits_cleared": self.frames, "high_bit_values": self.values}
        if self.planes:
            out["overlay_planes"] = self.planes
        if self.transfer_syntax:
            out["high_bits_transfer_syntax"] = self.transfer_syntax
        return out


def declared_overlay_planes(original: Dataset) -> list[int]:
    """Bit positions of the embedded overlays the 60xx groups of `original` declare."""
    planes = []
    for group in OVERLAY_GROUPS:
        allocated = _int(original, (group, 0x0100))
        position = _int(original, (group, 0x0102))
        if allocated is None and position is None:
            continue
        if (group, 0x3000) in original:  # Overlay Data present: the overlay lives there
            continue
        if (allocated is not None and allocated != 1) or (position is not None and position != 0):
            if position is None or not 0 <= position < 64:
                raise HighBitsError(f"({group:04X},0102) Overlay Bit Position: missing or out of range for an "
                                    "embedded overlay")
            planes.append(position)
    return sorted(set(planes))


def layout(ds: Dataset, planes: list[int] | tuple[int, ...] = ()) -> Layout:
    """The cell layout of `ds`, checked: the stored value must sit at bits 0..High Bit."""
    allocated = _int(ds, 0x00280100)
    stored = _int(ds, 0x00280101)
    high = _int(ds, 0x00280102)
    representation = _int(ds, 0x00280103) or 0
    if allocated is None:
        raise HighBitsError("no Bits Allocated (0028,0100)")
    stored = allocated if stored is None else stored
    if not 0 < stored <= allocated:
        raise HighBitsError("Bits Stored (0028,0101) is not between 1 and Bits Allocated (0028,0100)")
    if high is not None and high != stored - 1:
        raise HighBitsError("High Bit (0028,0102) is not Bits Stored (0028,0101) - 1: pixel values that do not "
                            "start at bit 0 are not supported")
    if any(p >= allocated for p in planes):
        raise HighBitsError("an embedded overlay's Overlay Bit Position (60xx,0102) is outside Bits Allocated")
    return Layout(allocated, stored, representation == 1, tuple(planes))


def canonical(cells: np.ndarray, lay: Layout) -> np.ndarray:
    """`cells` (integer array of any shape) in canonical form: declared overlay planes cleared,
    bits above High Bit zero (unsigned) or the sign extension (signed). A new array of the same
    dtype in native byte order."""
    native = cells.dtype.newbyteorder("=")
    unsigned = np.dtype(f"u{native.itemsize}")
    out = cells.astype(native, copy=True).view(unsigned)
    if lay.planes:
        mask = 0
        for p in lay.planes:
            mask |= 1 << p
        out &= np.array(~mask & ((1 << (out.itemsize * 8)) - 1), dtype=unsigned)
    if lay.shift:
        work = out.view(f"i{native.itemsize}") if lay.signed else out
        np.left_shift(work, lay.shift, out=work)
        np.right_shift(work, lay.shift, out=work)  # on the signed view: arithmetic, the sign extension
    return out.view(native)


_CHUNK_CELLS = 1 << 20  # the check looks at this many cells at a time: its memory stays a few MiB


def dirty(cells: np.ndarray, lay: Layout) -> bool:
    """Whether any cell is not in canonical form (for unsigned data one AND per chunk). Checked
    a chunk at a time, so a 1 GiB image costs no second gigabyte of temporaries."""
    if not lay.wanted:
        return False
    flat = cells.reshape(-1)
    return any(_dirty(flat[start:start + _CHUNK_CELLS], lay) for start in range(0, flat.size, _CHUNK_CELLS))


def _dirty(cells: np.ndarray, lay: Layout) -> bool:
    if not lay.signed and not lay.planes:
        top = ((1 << (cells.itemsize * 8)) - 1) ^ ((1 << lay.bits_stored) - 1)
        unsigned = cells.view(cells.dtype.str.replace("i", "u"))
        return bool(np.bitwise_and(unsigned, np.array(top, dtype=unsigned.dtype)).any())
    return not np.array_equal(canonical(cells, lay), cells)


def native_cells(ds: Dataset, lay: Layout) -> np.ndarray:
    """The stored pixel cells of native (uncompressed) Pixel Data, as read (a view)."""
    if lay.bits_allocated not in NATIVE_DTYPES:
        raise HighBitsError("Bits Allocated (0028,0100) is not 8, 16, 32 or 64: cells cannot be checked")
    ts = transfer_syntax(ds)
    order = "<" if ts.is_little_endian else ">"
    dtype = np.dtype(order + NATIVE_DTYPES[lay.bits_allocated])
    data = ds.PixelData or b""
    return np.frombuffer(data, dtype, count=len(data) // dtype.itemsize)


def clear_high_bits(ds: Dataset, original: Dataset) -> Cleared:
    """Rewrite `ds`'s Pixel Data in place so that no bit outside the stored value (and no declared
    embedded overlay plane of `original`) is set. Pixel Data changes only if a bit was set.
    Raises HighBitsError (also for lossy data with such bits; see the module doc)."""
    planes = declared_overlay_planes(original)
    lay = layout(ds, planes)
    result = Cleared(planes=list(planes))
    if not lay.wanted or "PixelData" not in ds:
        return result
    ts = transfer_syntax(ds)
    decoded: Decoded | None = None
    if ts.is_encapsulated and not _may_carry(ds, lay):
        return result
    if ts.is_encapsulated:
        try:
            decoded = decode(ds, unused_bits=True)
        except PixelDecodeError as exc:
            raise HighBitsError(f"cannot check the bits above High Bit: {exc}") from None
        cells = decoded.frames
    else:
        cells = native_cells(ds, lay)
    if not dirty(cells, lay):
        return result
    if ts in LOSSY_SYNTAXES or str(ds.get("LossyImageCompression", "")).strip() == "01":
        raise HighBitsError(f"pixel data that is or was lossy compressed ({syntax_name(ts)}) has bits set outside "
                            "the stored value (an embedded overlay?); clearing them would leave the overlay's "
                            "compression artefacts in the image")
    clean = canonical(cells, lay)
    changed = clean != cells
    if decoded is None:
        result.values = int(changed.sum())
        result.frames = _frames_changed(changed, ds)
        data = clean.astype(cells.dtype).tobytes()
        if len(ds.PixelData) > len(data):  # keep a trailing pad byte
            data += ds.PixelData[len(data):]
        element = ds["PixelData"]
        ds["PixelData"] = type(element)(element.tag, element.VR, data)  # a new element: never the original's
        result.transfer_syntax = str(ts)
        return result
    if changed.ndim == 4:
        changed = changed.any(axis=-1)
    result.values = int(changed.sum())
    result.frames = int(changed.reshape(changed.shape[0], -1).any(axis=1).sum())
    try:
        result.transfer_syntax = encode(ds, decoded, clean.astype(cells.dtype))
    except PixelDecodeError as exc:
        raise HighBitsError(str(exc)) from None
    return result


def high_bits_problem(ds: Dataset, original: Dataset, compressed_too: bool = False) -> str | None:
    """The post-check: why `ds`'s Pixel Data still has a bit outside the stored value (or a declared
    overlay plane) set, or None. Native data is always checked (one numpy pass); encapsulated
    data only with `compressed_too` (it must be decoded)."""
    if "PixelData" not in ds:
        return None
    try:
        lay = layout(ds, declared_overlay_planes(original))
        if not lay.wanted:
            return None
        if not transfer_syntax(ds).is_encapsulated:
            cells = native_cells(ds, lay)
        elif compressed_too and _may_carry(ds, lay):
            cells = decode(ds, unused_bits=True).frames
        else:
            return None
    except (HighBitsError, PixelDecodeError) as exc:
        return str(exc)
    if dirty(cells, lay):
        return "bits outside the stored pixel value (above High Bit, or an embedded overlay plane) are set"
    return None


def codestream_precision(ds: Dataset) -> int | None:
    """The largest sample precision the JPEG, JPEG-LS or JPEG 2000 codestreams of `ds` declare
    (SOFn / SOF55 P, SIZ Ssiz), or None when it cannot be read (RLE has none; then decode)."""
    ts = transfer_syntax(ds)
    if ts not in JPEG_FAMILY and ts not in J2K_FAMILY:
        return None
    try:
        count = int(ds.get("NumberOfFrames", 1) or 1)
        precisions = []
        for frame in generate_frames(ds.PixelData, number_of_frames=count):
            p = _j2k_precision(frame) if ts in J2K_FAMILY else _jpeg_precision(frame)
            if p is None:
                return None
            precisions.append(p)
    except Exception:  # noqa: BLE001 -- unreadable framing: decode instead, which fails closed
        return None
    return max(precisions) if precisions else None


def _may_carry(ds: Dataset, lay: Layout) -> bool:
    """Whether encapsulated pixel data can hold a bit outside the stored value: a codestream of
    precision <= Bits Stored cannot, so it need not be decoded (unless a declared plane lies
    inside that precision)."""
    precision = codestream_precision(ds)
    if precision is None:
        return True
    return precision > lay.bits_stored or any(p < precision for p in lay.planes)


def _jpeg_precision(frame: bytes) -> int | None:
    """P of the first SOFn (ISO 10918-1 B.2.2) or SOF55 (ISO 14495-1) segment."""
    i = 2 if frame[:2] == b"\xff\xd8" else None
    while i is not None and i + 4 < len(frame):
        if frame[i] != 0xFF:
            return None
        marker = frame[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in SOF_MARKERS:
            return frame[i + 4]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xDA, 0xD9):  # scan data before any SOF: not a frame we can read
            return None
        i += 2 + int.from_bytes(frame[i + 2:i + 4], "big")
    return None


def _j2k_precision(frame: bytes) -> int | None:
    precision = get_j2k_parameters(frame).get("precision")
    return int(precision) if precision else None


def _frames_changed(changed: np.ndarray, ds: Dataset) -> int:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
    usable = min(changed.size, frames * per_frame)
    if per_frame == 0 or usable < per_frame:
        return int(changed.any())
    head = changed[: usable - usable % per_frame].reshape(-1, per_frame).any(axis=1)
    return int(head.sum()) + int(changed[usable - usable % per_frame:].any())


def _int(ds: Dataset, tag) -> int | None:
    element = ds.get(tag)
    if element is None or element.value is None or element.value == b"" or element.value == "":
        return None
    value = element.value
    if isinstance(value, bytes):  # a private-dictionary or raw element read without VR
        return int.from_bytes(value[:2], "little") if len(value) >= 2 else None
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        raise HighBitsError(f"{_tag(tag)}: not a number") from None


def _tag(tag) -> str:
    t = tag if isinstance(tag, int) else (tag[0] << 16 | tag[1])
    return f"({t >> 16:04X},{t & 0xFFFF:04X})"
