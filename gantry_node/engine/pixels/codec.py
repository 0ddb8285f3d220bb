"""Decode pixel data of any accepted transfer syntax to an array, and write an array back.

Decoded values are kept exactly as stored wherever the codec allows: YBR_FULL stored natively
or losslessly is decoded WITHOUT colour conversion and written back as YBR_FULL; YBR_FULL_422
and lossy-JPEG YBR are converted to RGB (as pydicom, and a viewer, shows them) and written as
RGB; JPEG 2000 YBR_RCT / YBR_ICT come out of the codec as RGB (re-encoded J2K lossless colour
is YBR_RCT again). Written back:

    native little endian (implicit or explicit)  -> unchanged transfer syntax
    explicit VR big endian                       -> Explicit VR Little Endian
    deflated explicit VR little endian           -> deflated again
    RLE, JPEG lossless (.57, .70)                -> RLE Lossless
    JPEG-LS lossless (.80)                       -> JPEG-LS Lossless
    JPEG 2000 lossless (.90)                     -> JPEG 2000 Lossless
    lossy (JPEG .50/.51, JPEG-LS near-lossless .81, JPEG 2000 .91) -> Explicit VR Little Endian,
        LossyImageCompression stays "01" (re-encoding lossily would lose more)

A lossless re-encoding is decoded again and compared with the array; if the codec cannot
reproduce it exactly, the instance is written uncompressed instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array, set_pixel_data

LOSSY_SYNTAXES = {
    uid.JPEGBaseline8Bit: "ISO_10918_1", uid.JPEGExtended12Bit: "ISO_10918_1",
    uid.JPEGLSNearLossless: "ISO_14495_1", uid.JPEG2000: "ISO_15444_1",
    uid.JPEG2000MC: "ISO_15444_2", uid.HTJ2K: "ISO_15444_15",
}
RECOMPRESS = {
    uid.RLELossless: uid.RLELossless,
    uid.JPEGLossless: uid.RLELossless,
    uid.JPEGLosslessSV1: uid.RLELossless,
    uid.JPEGLSLossless: uid.JPEGLSLossless,
    uid.JPEG2000Lossless: uid.JPEG2000Lossless,
}


# PS3.3 C.7.6.3.1.2 defined terms (with the retired ones): quoted in messages; anything else is not
STANDARD_PHOTOMETRIC = frozenset({
    "MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "HSV", "ARGB", "CMYK", "YBR_FULL", "YBR_FULL_422",
    "YBR_PARTIAL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT", "XYB",
})


class PixelDecodeError(Exception):
    """Pixel data that cannot be decoded or written back; the instance must be quarantined.
    The message names the transfer syntax and problem, never a value."""


@dataclass
class Decoded:
    frames: np.ndarray          # (frames, rows, columns) or (frames, rows, columns, samples)
    photometric: str            # interpretation of the decoded values
    bits_stored: int
    source_syntax: str
    lossy: bool                 # the source was lossy compressed (now, or at some earlier time)


def has_pixels(ds: Dataset) -> bool:
    return "PixelData" in ds


def transfer_syntax(ds: Dataset) -> uid.UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None:
        raise PixelDecodeError("no Transfer Syntax UID in the file meta information")
    return uid.UID(str(ts))


def syntax_name(ts: uid.UID) -> str:
    """The transfer syntax's name for messages; a UID pydicom does not know (a private one, whose
    root may name an organisation) is not quoted."""
    name = ts.name
    return name if name and name != str(ts) else "an unrecognised transfer syntax"


def decode(ds: Dataset, frames: list[int] | None = None, unused_bits: bool = False) -> Decoded:
    """All frames of `ds` as one array with a leading frame axis; with `frames`, only those
    (in that order: what the OCR gate reads of a long cine without decoding all of it). With
    `unused_bits`, the bits above High Bit are returned as stored (pydicom otherwise clears them
    for native, RLE and JPEG data, but not for JPEG-LS and JPEG 2000): see pixels.highbits."""
    ts = transfer_syntax(ds)
    name = syntax_name(ts)
    pi = str(ds.get("PhotometricInterpretation", "")).strip()
    bits_allocated = int(ds.get("BitsAllocated", 0) or 0)
    if bits_allocated not in (8, 16):
        shown = bits_allocated if bits_allocated in (1, 32, 64) else "other than the standard's"
        raise PixelDecodeError(f"unsupported Bits Allocated ({shown}) ({name}); only 8 and 16 bit")
    if pi not in ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR",
                  "YBR_RCT", "YBR_ICT"):
        # the value is quoted only when it is one of the standard's terms (a malformed file may hold any text)
        shown = pi if pi in STANDARD_PHOTOMETRIC else "a value the standard does not define"
        raise PixelDecodeError(f"unsupported Photometric Interpretation ({shown}) ({name})")
    # YBR_FULL stored exactly (native or lossless) is kept as stored; anything else in YBR is
    # converted to RGB by pydicom, as a viewer would show it (YBR_FULL_422 cannot be written
    # back subsampled without mixing the fill into neighbouring chroma, and several IODs,
    # US among them, do not allow uncompressed YBR_FULL where the source had lossy JPEG YBR)
    raw = pi == "YBR_FULL" and ts not in LOSSY_SYNTAXES
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    expected = int(ds.get("NumberOfFrames", 1) or 1)
    options = {"correct_unused_bits": False} if unused_bits else {}
    try:
        if frames is None:
            arr = pixel_array(ds, raw=raw, **options)
            if arr.ndim == (2 if samples == 1 else 3):
                arr = arr[np.newaxis]
            if arr.shape[0] != expected:
                raise PixelDecodeError(f"decoded {arr.shape[0]} frame(s), Number of Frames says {expected}")
        else:
            if any(not 0 <= i < expected for i in frames):
                raise PixelDecodeError(f"frame index out of range 0..{expected - 1}")
            arr = np.stack([pixel_array(ds, raw=raw, index=i, **options) for i in frames])
    except PixelDecodeError as exc:
        raise PixelDecodeError(f"{exc} ({name})") from None
    except Exception as exc:  # noqa: BLE001 -- any codec failure means: cannot be redacted
        raise PixelDecodeError(f"cannot decode pixel data ({name}, {pi}): {type(exc).__name__}") from None
    out_pi = "YBR_FULL" if raw else {"YBR_FULL": "RGB", "YBR_FULL_422": "RGB", "YBR_RCT": "RGB",
                                      "YBR_ICT": "RGB"}.get(pi, pi)
    lossy = ts in LOSSY_SYNTAXES or str(ds.get("LossyImageCompression", "")).strip() == "01"
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))  # big endian sources decode as >u2
    return Decoded(arr, out_pi, int(ds.get("BitsStored", bits_allocated)), ts, lossy)


def encode(ds: Dataset, decoded: Decoded, frames: np.ndarray, recompress: bool = True) -> str:
    """Put `frames` (same shape as decoded.frames) into `ds` with consistent pixel module
    attributes and transfer syntax (see module doc; without `recompress`, lossless sources stay
    uncompressed too). Returns the transfer syntax written."""
    source = decoded.source_syntax
    arr = frames[0] if frames.shape[0] == 1 else frames
    keep_frames = "NumberOfFrames" in ds
    if not source.is_little_endian:
        _to_little_endian(ds)
    if source.is_encapsulated or not source.is_little_endian:
        ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    try:
        set_pixel_data(ds, arr, decoded.photometric, decoded.bits_stored, generate_instance_uid=False)
    except (ValueError, NotImplementedError, AttributeError) as exc:
        # pydicom's message may quote a value of the data set: only its type is shown
        raise PixelDecodeError(f"cannot write the pixels back ({syntax_name(source)}): {type(exc).__name__}") from None
    if keep_frames and "NumberOfFrames" not in ds:
        ds.NumberOfFrames = 1  # multi-frame IODs require it even for one frame
    if decoded.lossy:
        ds.LossyImageCompression = "01"
        if source in LOSSY_SYNTAXES and "LossyImageCompressionMethod" not in ds:
            ds.LossyImageCompressionMethod = LOSSY_SYNTAXES[source]
    target = RECOMPRESS.get(source) if recompress else None
    if target is not None:
        _recompress(ds, target, frames)
    return str(ds.file_meta.TransferSyntaxUID)


def to_native(ds: Dataset) -> str:
    """Rewrite `ds` in place as Explicit VR Little Endian with native pixel data, decoded as
    `decode` does (for a destination that does not accept its transfer syntax). Returns the
    source transfer syntax."""
    source = transfer_syntax(ds)
    if has_pixels(ds) and (source.is_encapsulated or not source.is_little_endian):
        decoded = decode(ds)
        encode(ds, decoded, decoded.frames, recompress=False)
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    return str(source)


def _recompress(ds: Dataset, target: uid.UID, frames: np.ndarray) -> None:
    """Lossless re-encoding, kept only if it decodes back to exactly `frames`."""
    before = {kw: ds[kw].value for kw in ("PhotometricInterpretation", "PlanarConfiguration", "PixelData")
              if kw in ds}
    try:
        if target == uid.JPEG2000Lossless and before["PhotometricInterpretation"] == "RGB":
            ds.PhotometricInterpretation = "YBR_RCT"  # RGB array + reversible colour transform (PS3.5 8.2.4)
        ds.compress(target, generate_instance_uid=False)
        # J2K stores RGB as YBR_RCT and decodes it back to RGB; YBR_FULL is compared unconverted
        check = pixel_array(ds, raw=str(ds.PhotometricInterpretation).startswith("YBR_FULL"))
        ok = np.array_equal(check.reshape(frames.shape), frames)
    except Exception:  # noqa: BLE001 -- the codec cannot take these pixels: stay uncompressed
        ok = False
    if not ok:
        for kw, value in before.items():
            setattr(ds, kw, value)
        if "PlanarConfiguration" not in before and "PlanarConfiguration" in ds:
            del ds.PlanarConfiguration
        ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
        if hasattr(ds, "_pixel_array"):
            ds._pixel_array = None


WORD_VRS = {"OW": ">u2", "OL": ">u4", "OF": ">f4", "OD": ">f8", "OV": ">u8"}


def _to_little_endian(ds: Dataset) -> None:
    """Prepare a dataset read as big endian to be written little endian: every element parsed,
    and the byte order of OW/OL/OF/OD/OV values (palette and LUT data, overlays) swapped, which
    pydicom leaves as read."""
    for elem in ds.iterall():
        if elem.VR in WORD_VRS and elem.tag != 0x7FE00010 and isinstance(elem.value, bytes) and elem.value:
            big = np.dtype(WORD_VRS[elem.VR])
            if len(elem.value) % big.itemsize == 0:
                elem.value = np.frombuffer(elem.value, big).astype(big.newbyteorder("<")).tobytes()
    ds.set_original_encoding(False, True)
    for elem in ds.iterall():
        if elem.VR == "SQ":
            for item in elem.value:
                item.set_original_encoding(False, True)
