"""The running node: assembles the inbox, store, audit, receiver process, worker pool,
forwarders and the cleanup thread.

Start-up is also recovery: rows a killed run left in `processing` are redone, inbox files no
row refers to (never acknowledged) and outbox files no undelivered delivery refers to are
removed, and forwarding resumes where it stopped.

Every long-running part runs under one Supervisor (gantry_node.node.supervise): the dispatcher's
claim loop and recorder, one forwarder per destination (or, with `associations` above 1, one
watcher per sender process: gantry_node.node.senders), the cleanup loop, and a watcher of each
receiver process (`node.receivers`). `healthy()` is False once any of them has failed for good; `serve` then
stops and exits non-zero. The clean-stop marker is written only when every component stopped
in order, after a sync: its presence is what lets the next start trust the outbox files.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from pathlib import Path

from gantry_node.engine.deid import SecretError, new_secret
from gantry_node.io.durable import fsync_dir
from gantry_node.node.audit_log import Audit
from gantry_node.node.config import Config, ConfigError, build_engines
from gantry_node.node.forwarder import Forwarder
from gantry_node.node.receiver import Receiver, gate_dir, probe_port
from gantry_node.node.senders import SenderProcess
from gantry_node.node.store import Store
from gantry_node.node.store.inbox import Inbox
from gantry_node.node.supervise import STATUS_FILE, ComponentExited, StatusFile, Supervisor
from gantry_node.node.worker import Dispatcher

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
        self.forwarders: list[Forwarder | SenderProcess] = []
        self.receivers: list[Receiver] = []
        self._receivers_lock = threading.Lock()  # a restart does not race a stop
        self.forwarded: queue.Queue[list[int]] = queue.Queue()  # instance ids, for the cleanup thread
        self._cleaning: list[int] = []  # ids taken off `forwarded`, kept across a cleanup restart
        self.supervisor = Supervisor(self.audit, self.stop_event, StatusFile(config.data_dir / STATUS_FILE))
        self.receiver_stopping = threading.Event()
        self.forwarders_stopped = threading.Event()  # then the cleanup loop may end once it is empty
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
        self.forwarders = []
        for d in cfg.effective_destinations():
            if d.associations == 1:  # a thread here, as before
                self.forwarders.append(Forwarder(d, self.store, self.audit, cfg.node.ae_title, self.stop_event,
                                                 self._forwarded, cfg.node.tcp_nodelay))
            else:  # one process per association, each with its share of the deliveries
                self.forwarders += [SenderProcess(cfg, d, k, self.stop_event, self._forwarded)
                                    for k in range(d.associations)]
        self.dispatcher.warm_up()
        sup = self.supervisor
        sup.add("dispatcher", self.dispatcher.run)
        sup.add("recorder", self.dispatcher.record_loop)
        for f in self.forwarders:
            sup.add(f.name, f.run)
        sup.add("cleanup", self._cleanup_loop)
        n = cfg.node.receivers
        if n > 1:
            probe_port(cfg)
            gate = gate_dir(cfg)
            gate.mkdir(mode=0o700, exist_ok=True)
            for stale in gate.iterdir():  # lock files: no receiver runs yet, none holds a lock
                stale.unlink(missing_ok=True)
        for _ in range(n):
            receiver = Receiver(cfg)
            try:
                receiver.start()
            except BaseException:
                for started in self.receivers:
                    started.stop()
                raise
            self.receivers.append(receiver)
        # one receiver that dies is not restarted here: the node exits and systemd starts it
        # again. Of several, a dead one is restarted (the others go on taking associations);
        # one that keeps dying fails the node as any component does.
        for i in range(n):
            sup.add("receiver" if n == 1 else f"receiver-{i + 1}", lambda i=i: self._watch_receiver(i),
                    restart=n > 1, stopping=self.receiver_stopping)
        self.audit.event("node_started", ae_title=cfg.node.ae_title, bind=cfg.node.bind, port=cfg.node.port,
                         secret_created=self.secret_created)

    def healthy(self) -> bool:
        """False once any component has failed for good or the receiver process has died (the
        node then exits, and its supervisor restarts it). A component in its restart backoff
        is not dead: that is the retry."""
        # several receivers: a dead one is the supervisor's to restart, and its to report
        receiver_ok = len(self.receivers) != 1 or self.receiver_stopping.is_set() or self.receivers[0].alive()
        return receiver_ok and self.supervisor.healthy()

    def receivers_alive(self) -> bool:
        return bool(self.receivers) and all(r.alive() for r in self.receivers)

    def failed_components(self) -> list[str]:
        failed = self.supervisor.failed()
        if len(self.receivers) == 1 and not self.receiver_stopping.is_set() and not self.receivers[0].alive() \
                and "receiver" not in failed:
            failed.append("receiver")
        return failed

    def _watch_receiver(self, i: int) -> None:
        with self._receivers_lock:
            if not self.receivers[i].alive() and not self.receiver_stopping.is_set():
                self.receivers[i] = Receiver(self.config)  # a restart (several receivers only)
                self.receivers[i].start()
            receiver = self.receivers[i]
        while not self.receiver_stopping.wait(0.5):
            if not receiver.alive():
                raise ComponentExited("the receiver process exited")

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
            if not self._cleaning:
                try:
                    self._cleaning = self.forwarded.get(timeout=0.5)
                except queue.Empty:
                    if self.forwarders_stopped.is_set():
                        return
            if self._cleaning:
                # a failure here leaves the ids in hand: the restarted loop does them again
                self._clean_up(self._cleaning, keep)
                self._cleaning = []
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

    def stop(self, reason: str | None = None) -> bool:
        """Stop every component in order: the receiver (no new instances; associations in
        progress finish), the claim loop and forwarders, the workers, the recorder, cleanup.
        Returns True, and leaves the clean-stop marker, only if each of them stopped in order."""
        sup = self.supervisor
        self.receiver_stopping.set()
        in_order = True
        with self._receivers_lock:
            for receiver in self.receivers:
                receiver.stop()
                in_order &= receiver.process.exitcode == 0
        self.stop_event.set()
        receivers = ["receiver"] if len(self.receivers) == 1 else [f"receiver-{i + 1}" for i in
                                                                    range(len(self.receivers))]
        in_order &= sup.join([*receivers, "dispatcher", *(f.name for f in self.forwarders)])
        self.forwarders_stopped.set()
        if self.dispatcher is not None:
            self.dispatcher.shutdown()
        in_order &= sup.join(["recorder", "cleanup"])
        in_order &= sup.healthy()
        with contextlib.suppress(Exception):  # a full disk must not keep the node from stopping
            self.audit.event("node_stopped", **({} if in_order and not reason else {
                "level": "error", "reason": reason or "not every component stopped in order"}))
        with contextlib.suppress(Exception):
            self.audit.close()
        self.store.close()
        if in_order:
            # the marker vouches for the outbox files (written without fsync): on disk first
            os.sync()
            self.clean_stop_marker.touch()
            fsync_dir(self.config.data_dir)
        return in_order
