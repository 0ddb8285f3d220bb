"""The audit trail: structlog JSON lines (to a file and/or stdout) and the same events in the
store's append-only table.

Only internal ids, pseudonymous UIDs, AE titles, addresses, counts and operator-readable
reasons are logged. `allow_listed` drops any other field (and says which), so a careless
`audit.event("received", patient=...)` cannot put a name in the log.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import IO, Any

import structlog

EVENTS = (  # every event the node writes; tests/test_audit_events.py holds the code and README to it
    "node_started", "node_stopped", "association_accepted", "association_rejected", "association_aborted",
    "received", "duplicate", "store_refused", "store_failed", "deidentified", "quarantined", "forwarded",
    "delivered", "delivery_warning", "delivery_retry", "forward_failed", "purged", "released", "recovered",
    "component_failed", "self_check",
)
FIELDS = frozenset({
    "event", "level", "timestamp", "instance", "sop_uid", "study_uid", "series_uid", "calling_ae", "called_ae",
    "peer", "destination", "status", "reason", "stage", "attempts", "count", "ae_title", "port", "bind",
    "state", "retry_in", "withheld", "secret_created", "outcome", "changes", "decompressed_from",
    "problems",  # library_warnings.Problem as text: tag, keyword and kind, never the value
    "component", "exception",  # component_failed: a component's name, an exception's type name
})


def quiet_library_warnings() -> None:
    """Drop pydicom's and pynetdicom's warnings in this process.

    Their validation warnings quote the offending value ("Invalid value for VR UI: '<the
    original SOP Instance UID>'", a malformed date of birth), and Python prints warnings on
    stderr, which is the node's journal. What is wrong with an instance is reported by tag,
    without values, as its quarantine reason. Each node process (main, receiver, workers)
    calls this at start: warning filters are not inherited by spawned processes.
    """
    for module in (r"pydicom(\.|$)", r"pynetdicom(\.|$)"):
        warnings.filterwarnings("ignore", category=UserWarning, module=module)


def allow_listed(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop fields that are not known to be PHI-free."""
    withheld = sorted(k for k in event_dict if k not in FIELDS)
    for key in withheld:
        del event_dict[key]
    if withheld:
        event_dict["withheld"] = withheld
    return event_dict


def utc_timestamp(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict.setdefault("timestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return event_dict


PROCESSORS = [structlog.processors.add_log_level, allow_listed, utc_timestamp,
              structlog.processors.JSONRenderer(sort_keys=True)]


class LineSink:
    """A structlog logger that writes each rendered line to several streams."""

    def __init__(self, streams: list[IO[str]]):
        self.streams = streams
        self._lock = threading.Lock()

    def msg(self, line: str) -> None:
        with self._lock:
            for s in self.streams:
                s.write(line + "\n")
                s.flush()

    info = warning = error = debug = msg


class Audit:
    """`event(name, instance=..., **fields)`: one JSON line out, one row in the audit table.

    Table rows are written in batches by a background thread (every FLUSH_SECONDS), so an
    audit event never holds up a C-STORE response; the JSON line is written at once."""

    FLUSH_SECONDS = 0.25

    def __init__(self, store=None, file: Path | None = None, stdout: bool = True):
        self.store = store
        self._pending: list[tuple[str, int | None, dict[str, Any], float]] = []
        self._pending_lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = None
        if store is not None:
            self._flusher = threading.Thread(target=self._flush_loop, name="audit-flush", daemon=True)
            self._flusher.start()
        streams: list[IO[str]] = []
        self._file = None
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # 0600 whatever the umask
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_mode & 0o077:
                    os.fchmod(fd, 0o600)
            self._file = open(fd, "a", encoding="utf-8")  # noqa: SIM115 -- closed in close()
            streams.append(self._file)
        if stdout:
            streams.append(sys.stdout)
        self.log = structlog.wrap_logger(LineSink(streams), processors=list(PROCESSORS),
                                         wrapper_class=structlog.BoundLogger).bind()  # not a lazy proxy per call

    def event(self, name: str, level: str = "info", **fields: Any) -> None:
        getattr(self.log, level)(name, **fields)
        if self.store is not None:
            kept = allow_listed(None, level, dict(fields))
            with self._pending_lock:
                self._pending.append((name, fields.get("instance"), kept, time.time()))

    def flush(self) -> None:
        with self._pending_lock:
            rows, self._pending = self._pending, []
        if rows and self.store is not None:
            try:
                self.store.audit_append(rows)
            except Exception:
                with self._pending_lock:
                    self._pending[:0] = rows
                raise

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.FLUSH_SECONDS):
            # a failed flush keeps its rows and is retried next time; the JSON lines have them
            with contextlib.suppress(Exception):
                self.flush()

    def close(self) -> None:
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.flush()
        if self._file is not None:
            self._file.close()
