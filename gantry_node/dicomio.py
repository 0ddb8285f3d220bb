"""Reading and writing instances at the edges: strict reads that name what is wrong, and
atomic writes (temp file, fsync, rename) so a reader never sees half a file."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import get_expected_length


class BadInput(ValueError):
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
        except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, NotImplementedError) as exc:
            raise BadInput(path, f"cannot parse: {type(exc).__name__}") from None
        check_dataset(ds, path)
    for w in caught:
        text = str(w.message)
        if "truncated" in text.lower() or "end of file" in text.lower():
            raise BadInput(path, f"truncated: {text.splitlines()[0][:100]}")
    return ds


def check_dataset(ds: Dataset, source: str | Path = "<dataset>") -> None:
    """Decode every element and check the essentials; BadInput names the offending tag."""
    for kw in ("SOPClassUID", "SOPInstanceUID"):
        if not str(ds.get(kw, "") or "").strip():
            raise BadInput(source, f"{kw} is missing: not a composite instance")
    _decode_all(ds, source, "")
    if "PixelData" in ds:
        _check_pixel_length(ds, source)
    elif ("Rows" in ds or "Image" in ds.SOPClassUID.name) and not any(
            k in ds for k in ("FloatPixelData", "DoubleFloatPixelData")):
        raise BadInput(source, "(7FE0,0010): image attributes present but no pixel data (file truncated?)")


def _decode_all(ds: Dataset, source, where: str) -> None:
    for tag in list(ds.keys()):  # noqa: SIM118 -- iterating a Dataset yields elements, not tags
        label = f"{where}({tag.group:04X},{tag.element:04X})"
        raw = ds.get_item(tag)
        # pydicom accepts a value cut short by the end of the file; the length field tells.
        if isinstance(raw, RawDataElement) and raw.length != 0xFFFFFFFF and raw.value is not None \
                and len(raw.value) != raw.length:
            raise BadInput(source, f"{label}: value is {len(raw.value)} of {raw.length} bytes (file truncated)")
        try:
            elem = ds[tag]
        except Exception as exc:  # noqa: BLE001 -- any decoding failure is bad input
            raise BadInput(source, f"{label}: value cannot be decoded ({type(exc).__name__})") from None
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                _decode_all(item, source, f"{label}[{i}].")
        elif elem.VR in ("US", "SS", "UL", "SL", "FL", "FD") and isinstance(elem.value, bytes):
            raise BadInput(source, f"{label}: {elem.VR} value of {len(elem.value)} bytes is malformed")


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
    try:
        expected = get_expected_length(ds, "bytes")
    except Exception:  # noqa: BLE001
        raise BadInput(source, "(7FE0,0010): pixel module attributes are missing or invalid") from None
    if len(value) < expected:
        raise BadInput(source, f"(7FE0,0010): pixel data is {len(value)} bytes, {expected} expected (truncated)")


def encode_instance(ds: Dataset) -> bytes:
    """The instance as a DICOM Part 10 file in memory (new preamble, the dataset's file meta)."""
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_atomic(data: bytes, path: str | Path, mode: int = 0o640) -> Path:
    """Write bytes to `path` so that it either exists complete and fsynced, or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def write_instance(ds: Dataset, path: str | Path, mode: int = 0o640) -> Path:
    return write_atomic(encode_instance(ds), path, mode)


def clean_path(root: str | Path, ds: Dataset) -> Path:
    """Where a de-identified instance goes under `root`: by its pseudonymous UIDs only, never by
    input file names (those often carry names and MRNs)."""
    study = str(ds.get("StudyInstanceUID") or "no-study")
    series = str(ds.get("SeriesInstanceUID") or "no-series")
    return Path(root) / study / series / f"{ds.SOPInstanceUID}.dcm"
