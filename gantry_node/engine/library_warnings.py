"""pydicom's and pynetdicom's warnings as problems named by tag, never by value.

pydicom validates values as it decodes them and warns with the value in the message
("Invalid value for VR UI: '1.2.3.SMITH'"); Python prints warnings on stderr, and pydicom
also sends each one to its logger. Here, while one instance is read and de-identified,
those warnings are recorded instead of shown, and turned into `Problem`s: the element's tag
and keyword, and the kind of problem ("invalid value for VR UI"), without the value.

    with instance_problems(path) as problems:
        ds = read_instance(path)
        clean = process(ds, engine)
    # problems: list[Problem], filled when the block ends (also when it raised)

pydicom's messages do not name the element. When anything was raised for an instance, the
file is read again and its elements decoded one at a time, each under its own
`catch_warnings`, so each warning belongs to the element whose decoding raised it; a
warning that no element reproduces is kept with the tag unknown. A clean instance costs
nothing extra. Not thread-safe (neither is `warnings.catch_warnings`): one instance at a
time per process, as the node's workers, the CLI and `Session` do.

No structlog, SQLite or files written here: the pure core may use it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pydicom.config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import validate_value

LIBRARIES = ("pydicom", "pynetdicom")


@dataclass(frozen=True)
class Problem:
    """One element a library complained about. `tag` is "(0008,0018)" (nested:
    "(0040,A730)[0].(0008,1155)"), or "" when the warning could not be tied to an element."""

    tag: str
    keyword: str
    kind: str

    def __str__(self) -> str:
        where = f"{self.tag} {self.keyword}".strip() or "(element not known)"
        return f"{where}: {self.kind} (value withheld)"


# pydicom's warning texts (pydicom 3: valuerep, values, charset), matched at their start;
# only the VR and lengths are taken from them, never the value.
KINDS: list[tuple[re.Pattern[str], str]] = [(re.compile(p, re.DOTALL), k) for p, k in [
    (r"Invalid value for VR (\w\w)\b", "invalid value for VR {0}"),
    (r"The value length \((\d+)\) exceeds the maximum length of (\d+) allowed for VR (\w\w)\b",
     "value too long for VR {2} ({0} > {1} characters)"),
    (r"A value of type '(\w+)' cannot be assigned to a tag with VR (\w\w)\b", "value of type {0} for VR {1}"),
    (r"The PN component length \((\d+)\) exceeds the maximum allowed length of (\d+)",
     "person name component too long ({0} > {1} characters)"),
    (r"The number of PN components length \((\d+)\) exceeds", "person name has {0} component groups (3 allowed)"),
    (r"Invalid value: a value for a tag with VR (\w\w) must be between", "value out of range for VR {0}"),
    (r"Invalid value length (\d+): the value length for a tag with VR (\w\w) must be a multiple of (\d+)",
     "value length {0} is not a multiple of {2} for VR {1}"),
    (r"Values for elements with a VR of 'DS' values must be <= 16 characters",
     "value too long for VR DS (more than 16 characters)"),
    (r"Value .* is not valid for elements with a VR of (\w\w)\b", "invalid value for VR {0}"),
    (r"'datetime\.\w+' doesn't allow a value of '60' for the seconds", "seconds of 60 read as 59"),
    (r"(Unknown encoding|Incorrect value for Specific Character Set|Value .* for Specific Character Set "
     r"does not allow|Value .* cannot be used as code extension)", "invalid Specific Character Set"),
    (r"Failed to decode byte string", "value not valid in the declared character set (replacement characters used)"),
    (r"Found unknown escape sequence", "unknown character set escape sequence in the value"),
    (r"Failed to encode value", "value cannot be encoded in the declared character set"),
]]


def kind_of(message: str, category: str = "UserWarning") -> str:
    """The kind of problem a library warning reports, without any value it quotes."""
    for pattern, kind in KINDS:
        m = pattern.match(message)
        if m:
            return kind.format(*m.groups())
    return f"{category} from the DICOM library (message withheld)"


class _Recorder(logging.Filter):
    """On pydicom's logger: keeps each warning's text and stops the record there, so a
    logging configuration of the application never prints the value."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        self.messages.append(record.getMessage())
        return False


class _Drop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Neither warnings nor pydicom's log records of WARNING and above leave the block: for
    library code that reports problems its own way (by tag, see `instance_problems`) and must
    never let a value reach the application's stderr or logs."""
    drop = _Drop()
    logger = logging.getLogger("pydicom")
    logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.removeFilter(drop)


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """Where pydicom and pynetdicom live (found, not imported: the pure core has no pynetdicom)."""
    dirs = []
    for name in LIBRARIES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            dirs.append(str(Path(spec.origin).parent) + os.sep)
    return tuple(dirs)


def _from_library(w: warnings.WarningMessage, dirs: tuple[str, ...]) -> bool:
    return any(w.filename.startswith(d) for d in dirs) or any(p.match(str(w.message)) for p, _ in KINDS)


@contextlib.contextmanager
def instance_problems(source: str | Path | None) -> Iterator[list[Problem]]:
    """Record (never show) the library warnings raised in the block and fill the yielded
    list with one `Problem` per element on exit. `source` is the instance's file, read again
    to tie warnings to elements; None: every problem is reported with its tag unknown.
    Warnings from other code are shown as usual once the block ends."""
    problems: list[Problem] = []
    recorder = _Recorder()
    logger = logging.getLogger("pydicom")
    dirs = _library_dirs()
    others: list[warnings.WarningMessage] = []
    logger.addFilter(recorder)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield problems
            finally:
                messages = []
                for w in caught:
                    if _from_library(w, dirs):
                        messages.append((str(w.message), w.category.__name__))
                    else:
                        others.append(w)
                messages += [(m, "UserWarning") for m in recorder.messages]
                if messages:
                    problems.extend(_attribute(source, messages, dirs))
    finally:
        logger.removeFilter(recorder)
        for w in others:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _attribute(source: str | Path | None, messages: list[tuple[str, str]], dirs) -> list[Problem]:
    """Decode the file's elements one by one to tie each warning to its element."""
    found: list[tuple[Problem, str]] = []
    if source is not None:
        with contextlib.suppress(Exception):  # unreadable: the strict read reports that, by tag
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always")
                ds = pydicom.dcmread(source, force=True, stop_before_pixels=True)
            meta = getattr(ds, "file_meta", None)
            if meta is not None:
                _walk(meta, "", found, dirs)
            _walk(ds, "", found, dirs)
    out: list[Problem] = []
    for problem, _ in found:
        if problem not in out:
            out.append(problem)
    tied = {text for _, text in found}
    for text, category in messages:
        if text not in tied:
            problem = Problem("", "", kind_of(text, category))
            if problem not in out:
                out.append(problem)
    return out


def _walk(ds: Dataset, where: str, found: list[tuple[Problem, str]], dirs) -> None:
    for tag in list(ds.keys()):  # noqa: SIM118 -- iterating a Dataset yields elements, not tags
        raw = ds.get_item(tag)
        label = f"{where}({tag >> 16:04X},{tag & 0xFFFF:04X})"
        elem = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with contextlib.suppress(Exception):  # an undecodable value is the strict read's to report
                elem = ds[tag]
                if not isinstance(raw, RawDataElement):  # decoded while the file was read (file meta)
                    _revalidate(elem.VR, elem.value)
        for w in caught:
            if _from_library(w, dirs):
                text = str(w.message)
                found.append((Problem(label, elem.keyword if elem is not None else _keyword(tag),
                                      kind_of(text, w.category.__name__)), text))
        if elem is not None and elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                _walk(item, f"{label}[{i}].", found, dirs)


def _revalidate(vr: str, value) -> None:
    for v in value if isinstance(value, MultiValue | list) else [value]:
        if isinstance(v, str | bytes):
            validate_value(vr, v, pydicom.config.WARN)


def _keyword(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag) or ""
