"""Supervision of the node's long-running components (threads, and the receiver process
through a watcher thread).

Each component is a `run()` that loops until the node's stop event is set. The supervisor
runs it in a thread of its own; when it raises (or returns while the node is running):

- the failure is audited as `component_failed` (component name, exception type; the message
  only when it is one of our own SafeMessage errors, which carry no values), and printed on
  stderr, so it reaches the journal even when the audit sink is what failed;
- a transient storage error (disk or quota full, database full or locked: `transient()`) is
  retried with backoff for as long as it lasts: the condition passes without an operator;
- any other exception is retried with backoff up to MAX_RESTARTS times in a row (a run longer
  than STABLE_SECONDS resets the count), if the component is safe to restart;
- otherwise the component is `failed`: `healthy()` turns False, and `gantry-node serve` stops
  and exits non-zero for its supervisor (systemd, Restart=on-failure) to start it again.

A component that knows which instance made it fail quarantines that instance itself before
the exception escapes (the forwarder, the dispatcher and the recorder do), so the queue moves
on after the restart. The states are also written to a small status file that
`gantry-node status` reads (`StatusFile`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from gantry_node.engine.errors import SafeMessage
from gantry_node.node.store import StoreError

TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
STATUS_FILE = "components.json"  # in the data directory: the supervisor's view, read by `gantry-node status`


def transient(exc: BaseException) -> bool:
    """A storage condition that passes on its own: retried, never quarantined."""
    if isinstance(exc, StoreError):
        return exc.transient
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def safe_reason(exc: BaseException) -> str:
    """What may be logged about an exception: its type, and its text only if it is ours."""
    name = type(exc).__name__
    return f"{name}: {exc}" if isinstance(exc, SafeMessage) else name


class ComponentExited(SafeMessage):
    """A component's run() returned, or its process ended, while the node was running."""


@dataclass
class ComponentState:
    name: str
    state: str = "starting"  # running, restarting, failed, stopped
    restarts: int = 0
    last_error: str | None = None
    since: float = 0.0

    def label(self) -> str:
        if self.state == "restarting":
            return f"restarting ({self.restarts})"
        if self.state == "running" and self.restarts:
            return f"running (restarted {self.restarts})"
        return self.state


class Supervisor:
    BACKOFF_INITIAL = 0.5
    BACKOFF_MAX = 30.0
    MAX_RESTARTS = 5
    STABLE_SECONDS = 60.0

    def __init__(self, audit, stop: threading.Event, status_file: StatusFile | None = None):
        self.audit = audit
        self.stop_event = stop
        self.status_file = status_file
        self.failure = threading.Event()  # set when a component failed for good
        self._states: dict[str, ComponentState] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def add(self, name: str, run: Callable[[], None], restart: bool = True,
            stopping: threading.Event | None = None) -> None:
        """Start supervising `run` in a thread named `name` (now). `run` returning counts as
        stopped once `stopping` (default: the node's stop event) is set, else as a failure."""
        with self._lock:
            self._states[name] = ComponentState(name, since=time.time())
        thread = threading.Thread(target=self._guard, args=(name, run, restart, stopping or self.stop_event),
                                  name=name, daemon=True)
        self._threads[name] = thread
        thread.start()

    # --- what the node and operators see -------------------------------------------------------

    def healthy(self) -> bool:
        return not self.failure.is_set()

    def failed(self) -> list[str]:
        with self._lock:
            return [s.name for s in self._states.values() if s.state == "failed"]

    def states(self) -> list[ComponentState]:
        with self._lock:
            return [ComponentState(**asdict(s)) for s in self._states.values()]

    def join(self, names: list[str], timeout: float = 10.0) -> bool:
        """Wait for these components to end (after the stop event); True if each stopped in
        order (ended, not failed)."""
        ok = True
        for name in names:
            thread = self._threads.get(name)
            if thread is None:
                continue
            thread.join(timeout)
            with self._lock:
                state = self._states[name]
                if thread.is_alive():
                    ok = False
                    state.last_error = "did not stop in time"
                ok = ok and state.state == "stopped"
        self._publish()
        return ok

    # --- the guard around each component ---------------------------------------------------------

    def _guard(self, name: str, run: Callable[[], None], restart: bool, stopping: threading.Event) -> None:
        failures = 0
        while True:
            self._set(name, "running")
            started = time.monotonic()
            try:
                run()
                if stopping.is_set():
                    self._set(name, "stopped")
                    return
                raise ComponentExited(f"{name} ended while the node was running")
            except Exception as exc:  # noqa: BLE001 -- the point of a supervisor
                if time.monotonic() - started > self.STABLE_SECONDS:
                    failures = 0
                failures += 1
                retry = restart and not self.stop_event.is_set() and (transient(exc) or failures <= self.MAX_RESTARTS)
                wait = min(self.BACKOFF_MAX, self.BACKOFF_INITIAL * 2 ** (failures - 1)) if retry else None
                self._report(name, exc, failures, wait)
                if not retry:
                    self._set(name, "failed", safe_reason(exc))
                    self.failure.set()
                    return
                with self._lock:
                    self._states[name].restarts += 1
                self._set(name, "restarting", safe_reason(exc))
                if self.stop_event.wait(wait):
                    self._set(name, "stopped")
                    return

    def _report(self, name: str, exc: BaseException, failures: int, wait: float | None) -> None:
        kind = type(exc).__name__
        fields = {"component": name, "exception": kind, "attempts": failures,
                  "outcome": "restarting" if wait is not None else "failed"}
        if isinstance(exc, SafeMessage):
            fields["reason"] = str(exc)
        elif transient(exc):
            fields["reason"] = "transient storage error (disk full or database locked)"
        if wait is not None:
            fields["retry_in"] = round(wait, 2)
        then = f"restarting in {wait:.1f} s" if wait is not None else "not restarted"
        print(f"gantry-node: component {name} failed ({kind}); {then}", file=sys.stderr, flush=True)
        # the audit sink may be what failed (a full disk): the line above still reaches the journal
        with contextlib.suppress(Exception):
            self.audit.event("component_failed", level="error", **fields)

    def _set(self, name: str, state: str, error: str | None = None) -> None:
        with self._lock:
            s = self._states[name]
            s.state, s.since = state, time.time()
            if error is not None:
                s.last_error = error
        self._publish()

    def _publish(self) -> None:
        if self.status_file is not None:
            self.status_file.write(self.states())


class StatusFile:
    """The components' states for `gantry-node status`, a separate process.

    Written in place into a file of fixed size, created at start: overwriting blocks the file
    already has needs no free space, so the states stay current on a full disk, which is when
    an operator looks at them. The reader strips the padding; a torn read is read again."""

    SIZE = 16384

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.write(fd, b" " * self.SIZE)  # allocate every block now, while there is room
        finally:
            os.close(fd)

    def write(self, states: list[ComponentState]) -> None:
        data = json.dumps({"pid": os.getpid(), "updated_at": time.time(),
                           "components": [asdict(s) for s in states]}).encode()
        if len(data) > self.SIZE:
            return
        with self._lock, contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.pwrite(fd, data.ljust(self.SIZE), 0)
            finally:
                os.close(fd)

    @staticmethod
    def read(path: Path) -> dict | None:
        """The last states written, with "running": False when that node process is gone."""
        for _ in range(3):
            try:
                doc = json.loads(path.read_bytes().strip() or b"null")
            except FileNotFoundError:
                return None
            except ValueError:
                time.sleep(0.01)
                continue
            if doc is None:
                return None
            doc["running"] = _alive(int(doc.get("pid", 0)))
            return doc
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
