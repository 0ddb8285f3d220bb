"""Child processes of the node must not outlive it: their work is redone at the next start."""

from __future__ import annotations

import os
import signal
import threading
import time


def exit_when_orphaned(parent_pid: int, every: float = 1.0) -> None:
    """Exit this process as soon as `parent_pid` is no longer its parent (looked at `every`
    seconds, in a daemon thread). The watcher is the child's own supervisor: if it fails, the
    process exits too (status 70, EX_SOFTWARE) rather than go on unwatched; its work is redone."""

    def watch() -> None:
        try:
            while os.getppid() == parent_pid:
                time.sleep(every)
        except BaseException:  # noqa: BLE001 -- an unwatched child must not linger
            os._exit(70)
        os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def die_with_parent(parent_pid: int, name: bytes) -> None:
    """Have the kernel SIGKILL this process when the node's main process dies (Linux), and
    name it (`name`, 15 bytes at most: what ps and /proc/PID/comm show) so operators can tell
    the node's processes apart."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(1, signal.SIGKILL) == 0  # PR_SET_PDEATHSIG
        libc.prctl(15, name)  # PR_SET_NAME
    except (OSError, AttributeError):
        armed = False
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)
    if not armed:  # not Linux: look every second instead
        exit_when_orphaned(parent_pid)
