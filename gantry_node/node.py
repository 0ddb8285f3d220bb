"""The running node: assembles the inbox, store, audit, receiver process, worker pool,
forwarders and the cleanup thread.

Start-up is also recovery: rows a killed run left in `processing` are redone, inbox files no
row refers to (never acknowledged) and outbox files no undelivered delivery refers to are
removed, and forwarding resumes where it stopped.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path

from gantry_node.audit import Audit
from gantry_node.config import Config, ConfigError, build_engines
from gantry_node.deid import SecretError, new_secret
from gantry_node.forwarder import Forwarder
from gantry_node.inbox import Inbox
from gantry_node.receiver import Receiver
from gantry_node.store import Store
from gantry_node.worker import Dispatcher

DAY = 86400.0


def prepare_data_dir(config: Config) -> bool:
    """Create the data directory (0700) and, on first start with the default secret location,
    a new secret (0600). Returns True when a secret was created."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(config.data_dir, 0o700)
    path = config.secret_path
    if path.exists() or not config.secret_is_default:
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(new_secret() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return True


def sweep_outbox(outbox: Path, keep: set[str]) -> int:
    """On start: remove clean files no undelivered delivery refers to (their instance was
    forwarded but a stop or crash came before the cleanup thread removed them)."""
    removed = 0
    for path in outbox.rglob("*"):
        if path.is_file() and str(path) not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class Node:
    def __init__(self, config: Config):
        self.config = config
        self.stop_event = threading.Event()
        self.secret_created = prepare_data_dir(config)
        try:
            build_engines(config)  # fail at start, naming the key, not in a worker later
        except SecretError as exc:
            raise ConfigError(f"secret_file: {exc}") from None
        self.store = Store(config.db_path)
        self.audit = Audit(self.store, config.audit_file, config.logging.stdout)
        self.inbox = Inbox(config.inbox.resolve())
        config.outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dispatcher: Dispatcher | None = None
        self.forwarders: list[Forwarder] = []
        self.receiver: Receiver | None = None
        self.forwarded: queue.Queue[list[int]] = queue.Queue()  # instance ids, for the cleanup thread
        self.threads: list[threading.Thread] = []
        # present only after an orderly stop; its absence at start means a crash or power cut
        self.clean_stop_marker = config.data_dir / "stopped-cleanly"

    def start(self) -> None:
        cfg = self.config
        redo = self.store.requeue_processing()
        if self.clean_stop_marker.exists():
            self.clean_stop_marker.unlink()
        else:
            redo += self.store.requeue_clean()
        swept = self.inbox.sweep(self.store.raw_paths())
        stale = sweep_outbox(cfg.outbox, self.store.undelivered_paths())
        if redo or swept or stale:
            self.audit.event("recovered", count=redo, state="received",
                             reason=f"{swept} unreferenced inbox files, {stale} stale outbox files")
        self.dispatcher = Dispatcher(cfg, self.store, self.audit, self.stop_event, on_clean=self._wake_forwarders)
        self.forwarders = [Forwarder(d, self.store, self.audit, cfg.node.ae_title, self.stop_event,
                                     self._forwarded, cfg.node.tcp_nodelay) for d in cfg.effective_destinations()]
        self.dispatcher.warm_up()
        self.dispatcher.start()
        for f in self.forwarders:
            f.start()
        cleaner = threading.Thread(target=self._cleanup_loop, name="cleanup", daemon=True)
        cleaner.start()
        self.threads = [self.dispatcher, *self.forwarders, cleaner]
        self.receiver = Receiver(cfg)
        self.receiver.start()
        self.audit.event("node_started", ae_title=cfg.node.ae_title, bind=cfg.node.bind, port=cfg.node.port,
                         secret_created=self.secret_created)

    def healthy(self) -> bool:
        """False once the receiver process has died (the node then exits, and its supervisor
        restarts it)."""
        return self.receiver is None or self.receiver.alive()

    def _wake_forwarders(self) -> None:
        for f in self.forwarders:
            f.wakeup.set()

    def _forwarded(self, instance_ids: list[int]) -> None:
        """Every destination acknowledged these instances. The cleanup thread records it and
        removes the files: unlinking a 512 KB file takes about a millisecond (more on a disk
        mounted with discard), time the forwarder thread should spend sending."""
        self.forwarded.put(instance_ids)

    def _cleanup_loop(self) -> None:
        keep = self.config.retention.raw
        period = 1.0 if keep == "immediately" else 60.0
        next_sweep = time.monotonic() + period
        while True:
            try:
                ids = self.forwarded.get(timeout=0.5)
            except queue.Empty:
                if self.stop_event.is_set():
                    return
                ids = []
            if ids:
                self._clean_up(ids, keep)
            if keep != "keep" and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + period
                days = 0 if keep == "immediately" else int(keep)
                # "immediately" is done as instances are forwarded; this also catches what a
                # crash or a stop interrupted
                due = self.store.purge_due(time.time() - days * DAY)
                if due:
                    self._purge_raw(due)

    def _clean_up(self, instance_ids: list[int], keep: str) -> None:
        rows = self.store.forwarded_rows(instance_ids)
        for row, clean_paths in rows:
            self.audit.event("forwarded", instance=row.id, sop_uid=row.clean_uid)
            for path in clean_paths:
                Path(path).unlink(missing_ok=True)
        if keep == "immediately":
            self._purge_raw([row for row, _ in rows])

    def _purge_raw(self, rows: list) -> None:
        for row in rows:
            self.inbox.discard(row.raw_path)
        self.store.mark_raw_purged([row.id for row in rows])
        for row in rows:
            self.audit.event("purged", instance=row.id, reason=f"retention {self.config.retention.raw}")

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.stop()  # no new instances first; associations in progress finish
        self.stop_event.set()
        for t in self.threads:
            if t is not self.dispatcher:
                t.join(timeout=10)
        if self.dispatcher is not None:
            self.dispatcher.shutdown()
            self.dispatcher.join(timeout=10)
        self.audit.event("node_stopped")
        self.audit.close()
        self.store.close()
        self.clean_stop_marker.touch()
