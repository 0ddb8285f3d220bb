"""The inbox: raw received instances (they hold PHI), in a 0700 directory.

`put` writes a file under its final, random name (never the sender's UIDs or names), fsyncs
it and fsyncs its folder: after `put` returns the bytes survive a crash or power cut. A file
only counts once the index row naming it is committed (the SCP commits the row after `put`);
on start, `sweep` removes files no row refers to, which is where a write interrupted by a
crash ends up. So no temporary name and rename are needed.

`create` opens such a file for an instance that is still arriving (the SCP streams each data
set there as its P-DATA comes in, so no instance is ever held whole in memory): `Incoming.write`
appends, `Incoming.commit` fsyncs the file and its folder, `Incoming.discard` closes and removes
it. A file left by a crash mid-transfer is swept like any other file without a row.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from gantry_node.io.durable import fsync_dir

TEMP_PREFIX = ".incoming-"  # written by earlier versions; still swept
FANOUT = 256  # sub-folders, by the first two hex digits of the name


class Inbox:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        # created once here (and made durable) so that `put` only ever fsyncs one folder
        for i in range(FANOUT):
            folder = self.root / f"{i:02x}"
            if not folder.is_dir():
                folder.mkdir(mode=0o700)
                fsync_dir(folder)
        fsync_dir(self.root)

    def put(self, *chunks: bytes | memoryview) -> Path:
        """Store one instance (the concatenated chunks) durably; raises OSError (e.g. ENOSPC)
        with nothing left behind."""
        name = uuid.uuid4().hex
        final = self.root / name[:2] / f"{name}.dcm"
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                _write_all(fd, chunks)
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(final.parent)
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return final

    def create(self) -> Incoming:
        """A new, empty file under its final random name, for an instance still arriving."""
        name = uuid.uuid4().hex
        final = self.root / name[:2] / f"{name}.dcm"
        return Incoming(final, os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    def discard(self, path: str | Path) -> None:
        Path(path).unlink(missing_ok=True)

    def sweep(self, known: set[str]) -> int:
        """On start: remove files no row refers to (written, then the process died before the
        row was committed: never acknowledged, so the sender still has them)."""
        removed = 0
        for path in self.root.rglob("*"):
            if path.is_file() and (path.name.startswith(TEMP_PREFIX) or str(path) not in known):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


class Incoming:
    """One inbox file being written. Not thread-safe: one writer, then commit or discard."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    def write(self, *chunks: bytes | memoryview) -> None:
        """Append; raises OSError (e.g. ENOSPC): the caller then discards the file."""
        if self._fd is None:
            raise ValueError("the inbox file is closed")
        _write_all(self._fd, chunks)

    def commit(self) -> Path:
        """fsync the file and its folder and close it: from here the bytes survive a crash."""
        if self._fd is None:
            raise ValueError("the inbox file is closed")
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Close (if open) and remove the file; never raises."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def _write_all(fd: int, chunks: Iterable[bytes | memoryview]) -> None:
    views = [memoryview(c) for c in chunks if len(c)]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]
