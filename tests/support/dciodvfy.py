"""Run dicom3tools' dciodvfy on a file and compare its errors between an input and an output.

dciodvfy prints one line per problem, e.g.
    Error - Value invalid for this VR - (0x0008,0x1010) SH Station Name  SH [1] = <CTROOM3-SPRINGFLD> - Length ...
The instance-specific parts (values in <...> after '=', lengths and counts) are replaced by
placeholders so the error sets of an input and its de-identified output compare as sets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DCIODVFY = shutil.which("dciodvfy")

_VALUE = re.compile(r"= <[^>]*>")
_NUMBER = re.compile(r"= -?\d+(\.\d+)?")
_INDEX = re.compile(r"\[\d+\]")

needs_dciodvfy = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed")


def dciodvfy_output(path: str | Path) -> str:
    if DCIODVFY is None:
        raise RuntimeError("dciodvfy (dicom3tools) is not installed")
    proc = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def normalize(line: str) -> str:
    text = line[line.index("Error - "):]
    text = _VALUE.sub("= <>", text)
    text = _NUMBER.sub("= #", text)
    return _INDEX.sub("[#]", text).strip()


def dciodvfy_errors(path: str | Path) -> set[str]:
    """The normalized 'Error - ...' lines dciodvfy reports for the file (empty: valid)."""
    return {normalize(line) for line in dciodvfy_output(path).splitlines() if "Error - " in line}
