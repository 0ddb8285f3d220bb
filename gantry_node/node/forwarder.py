"""Forwarding: one thread per destination takes due deliveries from the store and sends them.

Failures (refused association, timeout, failure status) are retried with exponential backoff
per delivery, and the destination as a whole backs off too so a PACS that is down is not
hammered; after `max_attempts` the instance becomes forward_failed and shows in `status`.
Warning statuses (B000, B006, B007) count as delivered and are logged. Delivery is
at-least-once: an instance sent again after a crash carries the same pseudonymous UIDs.

A poison instance (sending it raises: pynetdicom refuses a clean file whose SOP Instance UID
has two values with a TypeError) is `forward_failed` at once, with the reason "send failed:
<ExceptionType>", and the next instance goes on; retrying it could only fail the same way.
Anything else that escapes `run()` (a store error) is the supervisor's: it is audited and
the forwarder restarted; deliveries are rows, so nothing in hand is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from gantry_node.io.durable import write_atomic
from gantry_node.node.audit_log import Audit
from gantry_node.node.config import Destination
from gantry_node.node.network.scu import DicomPeer, SendResult
from gantry_node.node.store import Delivery, Store, StoreError

IDLE_RELEASE_SECONDS = 5.0


def backoff(dest: Destination, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th consecutive failure (1, 2, 4, ... capped)."""
    return min(dest.backoff_max, dest.backoff_initial * 2 ** max(0, attempts - 1))


class Forwarder:
    """One destination's sender; `run()` is the supervised component."""

    def __init__(self, dest: Destination, store: Store, audit: Audit, calling_ae: str, stop: threading.Event,
                 on_forwarded: Callable[[list[int]], None], tcp_nodelay: bool = True, batch: int = 32,
                 shard: tuple[int, int] | None = None):
        self.name = f"forward-{dest.name}"
        self.shard = shard  # (k, n): this sender's share of the destination's deliveries (senders.py)
        self.dest, self.store, self.audit, self.stop_event = dest, store, audit, stop
        self.on_forwarded = on_forwarded
        self.batch = batch
        self.wakeup = threading.Event()
        self.peer = DicomPeer(dest, calling_ae, tcp_nodelay) if dest.type == "dicom" else None
        self.failures = 0  # consecutive, for the destination's own backoff
        self.paused_until = 0.0

    def run(self) -> None:
        last_work = time.monotonic()
        try:
            while not self.stop_event.is_set():
                if time.monotonic() < self.paused_until:
                    self.stop_event.wait(min(0.5, self.paused_until - time.monotonic()))
                    continue
                due = self.store.due_deliveries(self.dest.name, self.batch, self.shard)
                if not due:
                    if self.peer is not None and time.monotonic() - last_work > IDLE_RELEASE_SECONDS:
                        self.peer.close()
                    self.wakeup.wait(0.2)
                    self.wakeup.clear()
                    continue
                last_work = time.monotonic()
                self.send_batch(due)
        finally:
            if self.peer is not None:
                # also after a failure: the supervisor's restart starts from a fresh association
                self.peer.close(abort=not self.stop_event.is_set())

    def send_batch(self, due: list[Delivery]) -> None:
        if self.peer is not None:
            problem = self.peer.ensure({(d.sop_class, d.transfer_syntax) for d in due})
            if problem is not None and problem.transport:
                for d in due[:1]:  # one attempt counted per round while the destination is unreachable
                    self.failed(d, problem.note)
                self.pause()
                return
            if problem is not None:  # it answers, but takes none of these: each waits its own turn
                for d in due:
                    self.failed(d, problem.note)
                return
        done: list[Delivery] = []
        try:
            for d in due:
                if self.stop_event.is_set():
                    return
                result = self.guarded_send(d)
                if result.poison:
                    self.poisoned(d, result.note)
                    continue
                if result.delivered:
                    self.failures = 0
                    done.append(d)
                    self.log_delivered(d, result)
                else:
                    self.failed(d, result.note)
                    if result.transport:  # back off the destination as a whole
                        self.pause()
                        return
        finally:
            # acknowledged deliveries are recorded together (a crash before this re-sends
            # them: at-least-once, under the same UIDs)
            if done:
                complete = self.store.delivered(done)
                if complete:
                    self.on_forwarded(complete)

    def guarded_send(self, d: Delivery) -> SendResult:
        """`send_one`, with whatever it raises pinned on this instance (never on the thread).
        The store's errors are not the instance's fault and go to the supervisor."""
        try:
            return self.send_one(d)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 -- one instance must not stop the queue
            if self.peer is not None:
                self.peer.close(abort=True)  # its state after an exception is unknown
            return SendResult(False, None, f"send failed: {type(exc).__name__}", poison=True)

    def send_one(self, d: Delivery) -> SendResult:
        if not Path(d.clean_path).is_file():
            return SendResult(False, 0, "clean file missing from the outbox")
        if self.peer is not None:
            return self.peer.send(d.clean_path, d.sop_class, d.transfer_syntax)
        target = self.dest.path / Path(d.clean_path).relative_to(Path(d.clean_path).parents[2])
        try:
            write_atomic(Path(d.clean_path).read_bytes(), target)
        except OSError as exc:
            return SendResult(False, None, f"cannot write to the folder: {exc.strerror}", transport=True)
        return SendResult(True, 0, "written")

    def log_delivered(self, d: Delivery, result: SendResult) -> None:
        if result.warning:
            self.audit.event("delivery_warning", level="warning", instance=d.instance_id, destination=self.dest.name,
                             sop_uid=d.clean_uid, status=f"0x{result.status:04X}", reason=result.note)
        extra = {"decompressed_from": result.decompressed_from} if result.decompressed_from else {}
        self.audit.event("delivered", instance=d.instance_id, destination=self.dest.name, sop_uid=d.clean_uid,
                         **extra)

    def failed(self, d: Delivery, note: str) -> None:
        attempts = d.attempts + 1
        if attempts >= self.dest.max_attempts:
            self.store.delivery_failed(d, note, None)
            self.audit.event("forward_failed", level="error", instance=d.instance_id, destination=self.dest.name,
                             sop_uid=d.clean_uid, attempts=attempts, reason=note)
            return
        wait = backoff(self.dest, attempts)
        self.store.delivery_failed(d, note, time.time() + wait)
        self.audit.event("delivery_retry", level="warning", instance=d.instance_id, destination=self.dest.name,
                         sop_uid=d.clean_uid, attempts=attempts, reason=note, retry_in=round(wait, 2))

    def poisoned(self, d: Delivery, note: str) -> None:
        """Sending this instance raised: held as forward_failed now (release or purge it)."""
        self.store.delivery_failed(d, note, None)
        self.audit.event("forward_failed", level="error", instance=d.instance_id, destination=self.dest.name,
                         sop_uid=d.clean_uid, attempts=d.attempts + 1, reason=note)

    def pause(self) -> None:
        self.failures += 1
        self.paused_until = time.monotonic() + backoff(self.dest, self.failures)
