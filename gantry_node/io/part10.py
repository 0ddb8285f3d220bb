"""Reading and writing instances at the edges: strict reads that name what is wrong, and
atomic writes (temp file, fsync, rename) so a reader never sees half a file."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import get_expected_length

from gantry_node.engine.encoding import encode_dataset
from gantry_node.engine.errors import SafeMessage
from gantry_node.io.durable import write_atomic


class BadInput(SafeMessage, ValueError):
    """A file that is not a usable DICOM instance. The message names the file and the tag."""

    def __init__(self, path: str | Path, problem: str, kind: str = "corrupt"):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem
        self.kind = kind  # "not-dicom" or "corrupt"


def read_instance(path: str | Path, force_meta: bool = False) -> Dataset:
    """Read and fully decode one instance, or raise BadInput.

    pydicom reads lazily and forgives a great deal (a truncated file reads "fine" with short
    pixel data); here every element is decoded and the pixel data length checked, so a bad
    file is caught on the way in rather than half-processed.
    """
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, force=force_meta)
        except InvalidDicomError:
            raise BadInput(path, "not a DICOM file (no DICM prefix or file meta)", "not-dicom") from None
        except Exception as exc:  # noqa: BLE001 -- any parse failure is bad input; its text may quote data
            where = _last_tag_read(path, force_meta)
            raise BadInput(path, f"{where}cannot parse: {type(exc).__name__}") from None
        check_dataset(ds, path)
    for w in caught:
        text = str(w.message)
        if "truncated" in text.lower() or "end of file" in text.lower():
            raise BadInput(path, f"truncated: {text.splitlines()[0][:100]}")
    return ds


def check_dataset(ds: Dataset, source: str | Path = "<dataset>") -> None:
    """Decode every element and check the essentials; BadInput names the offending tag."""
    for kw, tag in (("SOPClassUID", 0x00080016), ("SOPInstanceUID", 0x00080018)):
        try:
            value = str(ds.get(kw, "") or "").strip()
        except Exception as exc:  # noqa: BLE001 -- its text may quote the value
            raise BadInput(source, f"{_label('', tag)}: cannot be read ({type(exc).__name__})") from None
        if not value:
            raise BadInput(source, f"{kw} is missing: not a composite instance")
    _decode_all(ds, source, "")
    if "PixelData" in ds:
        _check_pixel_length(ds, source)
    elif ("Rows" in ds or "Image" in ds.SOPClassUID.name) and not any(
            k in ds for k in ("FloatPixelData", "DoubleFloatPixelData")):
        raise BadInput(source, "(7FE0,0010): image attributes present but no pixel data (file truncated?)")


_FIXED_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4, "SV": 8, "UV": 8,
               "OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
_KNOWN_VRS = frozenset(_FIXED_SIZE) | {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "OB", "PN", "SH",
                                       "SQ", "ST", "TM", "UC", "UI", "UN", "UR", "UT"}


def _decode_all(ds: Dataset, source, where: str) -> None:
    """Check every element's encoding without decoding values the engine will not touch:
    a known VR, a length that fits the VR, a value not cut short. Sequences are decoded and
    their items checked the same way. Any failure names the element."""
    for tag in list(ds.keys()):  # noqa: SIM118 -- iterating a Dataset yields elements, not tags
        try:
            _check_element(ds, tag, source, where)
        except BadInput:
            raise
        except Exception as exc:  # noqa: BLE001 -- a foreign exception's text may quote the value
            raise BadInput(source, f"{_label(where, tag)}: cannot be read ({type(exc).__name__})") from None


def _check_element(ds: Dataset, tag, source, where: str) -> None:
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement):
        if raw.VR is not None and raw.VR not in _KNOWN_VRS:
            raise BadInput(source, f"{_label(where, tag)}: invalid VR {raw.VR!r}")
        vr = _decoding_vr(raw, ds)
        length = raw.length
        if raw.value is not None and length != 0xFFFFFFFF and len(raw.value) != length:
            # pydicom accepts a value cut short by the end of the file; the length field tells.
            raise BadInput(source, f"{_label(where, tag)}: value is {len(raw.value)} of {length} bytes "
                                   "(file truncated)")
        size = _FIXED_SIZE.get(vr)
        if size and length != 0xFFFFFFFF and length % size and tag != 0x7FE00010:
            if tag >> 16 & 1:
                # A private element whose length does not fit the VR pydicom would decode it with
                # (in implicit VR, its private dictionary's: Siemens' (0019,1021) FD of 2 bytes):
                # its bytes, as UN, so nothing downstream decodes it with the wrong VR.
                ds[tag] = DataElement(tag, "UN", raw.value)
                return
            raise BadInput(source, f"{_label(where, tag)}: {vr} value of {length} bytes is not a multiple "
                                   f"of {size}")
        if vr != "SQ":
            return
    try:
        elem = ds[tag]
    except Exception as exc:  # noqa: BLE001 -- any decoding failure is bad input
        raise BadInput(source, f"{_label(where, tag)}: value cannot be decoded ({type(exc).__name__})") from None
    if elem.VR == "SQ":
        for i, item in enumerate(elem.value or []):
            _decode_all(item, source, f"{_label(where, tag)}[{i}].")


def _decoding_vr(raw: RawDataElement, ds: Dataset) -> str:
    """The VR pydicom will decode `raw` with: the one in the file, or for implicit VR (and UN
    that pydicom replaces) its dictionary's, the private dictionary's for private elements."""
    from pydicom.hooks import hooks

    found: dict = {}
    hooks.raw_element_vr(raw, found, encoding=None, ds=ds)
    return str(found.get("VR") or "UN")


def _last_tag_read(path: Path, force: bool) -> str:
    """"(gggg,eeee): " for the last top-level element whose header pydicom read before failing
    (the one it failed in, most likely), or "" if none was."""
    from pydicom.filereader import read_partial

    seen: list[int] = []

    def record(tag, vr, length) -> bool:
        seen.append(int(tag))
        return False

    try:
        with warnings.catch_warnings(), open(path, "rb") as f:
            warnings.simplefilter("ignore")
            read_partial(f, stop_when=record, force=force)
    except Exception:  # noqa: BLE001 -- the failure being located
        pass
    return f"{_label('', seen[-1])}: " if seen else ""


def _label(where: str, tag: int) -> str:
    """The element's place for an error message (built only when one is needed)."""
    return f"{where}({tag >> 16:04X},{tag & 0xFFFF:04X})"


_PIXEL_COUNTS = {0x00280002: "Samples per Pixel", 0x00280008: "Number of Frames", 0x00280010: "Rows",
                 0x00280011: "Columns", 0x00280100: "Bits Allocated"}


def _check_pixel_length(ds: Dataset, source) -> None:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    pixel = ds.get_item("PixelData")
    value = pixel.value if pixel is not None else None
    if not isinstance(value, bytes):
        return
    if ts is not None and ts.is_compressed:
        from pydicom.encaps import generate_fragments

        try:
            fragments = list(generate_fragments(value))
        except Exception:  # noqa: BLE001
            raise BadInput(source, "(7FE0,0010): encapsulated pixel data is malformed or truncated") from None
        if not fragments:
            raise BadInput(source, "(7FE0,0010): encapsulated pixel data has no fragments")
        return
    for tag, name in _PIXEL_COUNTS.items():
        # a malformed IS (e.g. Number of Frames "1A") reads as text; pydicom would then
        # multiply Rows x Columns by a string
        count = ds[tag].value if tag in ds else None
        if count not in (None, "") and not isinstance(count, int):
            raise BadInput(source, f"{_label('', tag)}: {name} is not a whole number")
    try:
        expected = get_expected_length(ds, "bytes")
    except Exception:  # noqa: BLE001
        raise BadInput(source, "(7FE0,0010): pixel module attributes are missing or invalid") from None
    if len(value) < expected:
        raise BadInput(source, f"(7FE0,0010): pixel data is {len(value)} bytes, {expected} expected (truncated)")


encode_instance = encode_dataset  # the instance as a Part 10 file in memory


def write_instance(ds: Dataset, path: str | Path, mode: int = 0o640, durable: bool = True) -> Path:
    return write_atomic(encode_instance(ds), path, mode, durable)


def clean_path(root: str | Path, ds: Dataset) -> Path:
    """Where a de-identified instance goes under `root`: by its pseudonymous UIDs only, never by
    input file names (those often carry names and MRNs)."""
    study = str(ds.get("StudyInstanceUID") or "no-study")
    series = str(ds.get("SeriesInstanceUID") or "no-series")
    return Path(root) / study / series / f"{ds.SOPInstanceUID}.dcm"
