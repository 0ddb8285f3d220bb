"""import_folder: catalogue the headers of every file under a folder (pixels are not read).

`catalogue_file` is a plain function of a path, so it runs the same in this process or in a
pool of processes (large folders). A file that is not DICOM, or whose header cannot be read,
is catalogued with a reason and skipped by every later step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from gantry_node.engine.library_warnings import instance_problems

# Header attributes kept as JSON for the DataFrame (geometry, acquisition, descriptions).
ATTRS = ("StudyDate", "StudyDescription", "SeriesNumber", "SeriesDescription", "InstanceNumber",
         "BodyPartExamined", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices", "ImagePositionPatient",
         "ImageOrientationPatient", "KVP", "RepetitionTime", "EchoTime", "MagneticFieldStrength", "PatientAge",
         "PatientSex", "PhotometricInterpretation", "BitsAllocated", "SamplesPerPixel", "ImageType",
         "LongitudinalTemporalInformationModified", "PatientIdentityRemoved")
SKIP_NAMES = {"DICOMDIR"}
PARALLEL_THRESHOLD = 256  # below this many files a process pool costs more than it saves
DEFER_BYTES = 4096  # large values (pixels) are not read, only located


def iter_files(root: Path, exclude: Iterable[Path] = ()) -> Iterator[Path]:
    excluded = [Path(p).resolve() for p in exclude]
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name in SKIP_NAMES or path.name.startswith("."):
            continue
        resolved = path.resolve()
        if any(resolved == e or e in resolved.parents for e in excluded):
            continue
        yield path


def plain(value: Any) -> Any:
    """A header value as a plain JSON value."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Dataset | bytes):
        return None
    if isinstance(value, MultiValue | list | tuple):
        return [plain(v) for v in value]
    if type(value).__name__ in ("DSfloat", "DSdecimal"):
        return float(value)
    if type(value).__name__ == "IS":
        return int(value)
    return str(value)


def _text(ds: Dataset, kw: str) -> str:
    value = ds.get(kw)
    return "" if value is None else str(value).strip()


def _int(ds: Dataset, kw: str) -> int | None:
    try:
        value = ds.get(kw)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def header_row(ds: Dataset) -> dict[str, Any]:
    """The catalogue columns of one header (original or de-identified)."""
    return {
        "sop_class": _text(ds, "SOPClassUID"), "sop_uid": _text(ds, "SOPInstanceUID"),
        "study_uid": _text(ds, "StudyInstanceUID"), "series_uid": _text(ds, "SeriesInstanceUID"),
        "patient_id": _text(ds, "PatientID"), "modality": _text(ds, "Modality"),
        "manufacturer": _text(ds, "Manufacturer"), "model": _text(ds, "ManufacturerModelName"),
        "serial": _text(ds, "DeviceSerialNumber"), "rows": _int(ds, "Rows"), "columns": _int(ds, "Columns"),
        "frames": _int(ds, "NumberOfFrames") or (1 if "Rows" in ds else None),
        "burned_in": _text(ds, "BurnedInAnnotation"),
        "attrs": json.dumps({k: _safe_plain(ds, k) for k in ATTRS if k in ds}),
    }


def _safe_plain(ds: Dataset, kw: str) -> Any:
    try:
        return plain(ds.get(kw))
    except Exception:  # noqa: BLE001 -- an undecodable value is left out, not fatal
        return None


def catalogue_file(path: str) -> dict[str, Any]:
    """One catalogue row for `path`. Never raises; problems name the file and tag, not values."""
    row: dict[str, Any] = {"source": path, "status": "ok", "problem": "", "warnings": 0}
    try:
        row["size"] = os.path.getsize(path)
    except OSError as exc:
        return {**row, "status": "corrupt", "problem": f"cannot read: {exc.strerror}"}
    with instance_problems(path) as value_problems:  # pydicom's warnings quote values: recorded by tag
        try:
            ds = pydicom.dcmread(path, defer_size=DEFER_BYTES)
            row.update(header_row(ds))
            problem = _problem(ds, row["size"])
        except InvalidDicomError:
            return {**row, "status": "not-dicom", "problem": "not a DICOM file (no DICM prefix or file meta)"}
        except Exception as exc:  # noqa: BLE001 -- any parse failure is a corrupt file
            return {**row, "status": "corrupt", "problem": f"cannot parse the header: {type(exc).__name__}"}
    row["warnings"] = len(value_problems)
    row["value_problems"] = json.dumps([dataclasses.asdict(p) for p in value_problems]) if value_problems else ""
    if problem:
        row.update(status="corrupt", problem=problem)
    meta = getattr(ds, "file_meta", None)
    row["transfer_syntax"] = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return row


def _problem(ds: Dataset, size: int) -> str:
    for kw in ("SOPClassUID", "SOPInstanceUID"):
        if not _text(ds, kw):
            return f"{kw} is missing: not a composite instance"
    raw = ds._dict.get(0x7FE00010)
    length = getattr(raw, "length", None)
    tell = getattr(raw, "value_tell", None)
    if length is not None and tell is not None and length != 0xFFFFFFFF and tell + length > size:
        return f"(7FE0,0010): pixel data is {max(size - tell, 0)} of {length} bytes (file truncated)"
    if raw is None and "Rows" in ds and not any(k in ds for k in ("FloatPixelData", "DoubleFloatPixelData")):
        return "(7FE0,0010): image attributes present but no pixel data (file truncated?)"
    return ""


def catalogue_files(paths: list[str], progress: Callable[[Iterable, int], Iterable] | None = None,
                    workers: int | None = None) -> list[dict[str, Any]]:
    """Rows for every path, in order; across processes when there are many."""
    if len(paths) < PARALLEL_THRESHOLD or (workers is not None and workers <= 1):
        results: Iterable = map(catalogue_file, paths)
        return list(progress(results, len(paths)) if progress else results)
    return parallel_map(catalogue_file, paths, progress, workers)


def parallel_map(fn: Callable, items: list, progress: Callable[[Iterable, int], Iterable] | None = None,
                 workers: int | None = None, chunksize: int = 64) -> list:
    return list(parallel_iter(fn, items, progress, workers, chunksize))


def parallel_iter(fn: Callable, items: list, progress: Callable[[Iterable, int], Iterable] | None = None,
                  workers: int | None = None, chunksize: int = 64) -> Iterator:
    """parallel_map's results one at a time, in order (the caller need not hold them all)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: no re-import of the caller's script (a notebook or a script without a main guard)
    context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 2, mp_context=context) as pool:
        with warnings.catch_warnings():  # map submits every chunk, so the workers fork here
            warnings.simplefilter("ignore", DeprecationWarning)  # "fork with threads running" (tqdm's monitor)
            results = pool.map(fn, items, chunksize=chunksize)
        yield from (progress(results, len(items)) if progress else results)
