"""The inbox: raw received instances (they hold PHI), in a 0700 directory.

A file is written under a temporary name, fsynced, renamed into place and the directory
fsynced, so after `put` returns the bytes survive a crash or power cut. File names are random
(never the sender's UIDs or names)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

TEMP_PREFIX = ".incoming-"


class Inbox:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)

    def put(self, data: bytes) -> Path:
        """Store one instance durably; raises OSError (e.g. ENOSPC) with nothing left behind."""
        name = uuid.uuid4().hex
        final = self.root / name[:2] / f"{name}.dcm"
        new_folder = not final.parent.exists()
        final.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = self.root / f"{TEMP_PREFIX}{name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        for folder in (final.parent, self.root) if new_folder else (final.parent,):
            _fsync_dir(folder)
        return final

    def discard(self, path: str | Path) -> None:
        Path(path).unlink(missing_ok=True)

    def sweep(self, known: set[str]) -> int:
        """On start: remove temp files and files no row refers to (written, then the process
        died before the row was committed: never acknowledged, so the sender still has them)."""
        removed = 0
        for path in self.root.rglob("*"):
            if path.is_file() and (path.name.startswith(TEMP_PREFIX) or str(path) not in known):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
