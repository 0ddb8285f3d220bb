"""Writes that are whole or absent: the one temp-file-and-rename, and the one directory fsync."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gantry_node.engine.encoding import Encoded


def write_atomic(data: bytes | Encoded, path: str | Path, mode: int = 0o640, durable: bool = True) -> Path:
    """Write bytes (or an encoded instance's pieces) to `path` so that it either exists
    complete, or not at all. With `durable`
    the file and its directory entry are fsynced before returning (what the node acknowledges
    must survive a power cut); offline batch writers may skip that and sync once at the end."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, Encoded):
                data.write_to(f)
            else:
                f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def fsync_dir(path: str | Path) -> None:
    """Make a folder's entries (a rename, a new file) survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
