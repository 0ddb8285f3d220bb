"""Child processes of the node must not outlive it: their work is redone at the next start."""

from __future__ import annotations

import os
import threading
import time


def exit_when_orphaned(parent_pid: int, every: float = 1.0) -> None:
    """Exit this process as soon as `parent_pid` is no longer its parent (looked at `every`
    seconds, in a daemon thread)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
