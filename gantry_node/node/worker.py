"""The worker pool: de-identify received instances in separate processes.

A dispatcher thread in the node claims rows (received -> processing) and hands raw file paths
to a pool of processes; each process reads the file strictly, runs THE shared pipeline
(`gantry_node.engine.pipeline.process`) once per distinct policy, and writes each clean instance
atomically to the outbox. The dispatcher records the outcome: clean (with one delivery per
destination) or quarantined with a reason an operator can read. Processes, not threads: the
pipeline is CPU-bound Python and must not starve the SCP of the GIL.

A full disk (ENOSPC, EDQUOT) while writing the outbox is not the instance's fault: the row
goes back to `received` without counting an attempt, and the dispatcher stops claiming for a
while (backoff up to TRANSIENT_BACKOFF_MAX), so the instance is processed once there is room,
with no operator. The claim loop (`run`) and the recorder (`record_loop`) are supervised
components (gantry_node.node.supervise); both may be restarted after a failure and pick up where
they stopped: the recorder keeps the batch it was recording, the claim loop gives back rows it
claimed but never handed to a worker.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from gantry_node.engine.encoding import Encoded
from gantry_node.io.durable import write_atomic
from gantry_node.node.audit_log import Audit, quiet_library_warnings
from gantry_node.node.config import Config, build_engines
from gantry_node.node.orphans import exit_when_orphaned
from gantry_node.node.store import Instance, Store, StoreError
from gantry_node.node.store.db import CleanCopy

POLL_SECONDS = 0.05  # an indexed query; a new instance waits at most this long to be claimed
MAX_PROCESS_ATTEMPTS = 3  # a file that keeps killing worker processes is quarantined
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
TRANSIENT_BACKOFF_INITIAL = 0.5
TRANSIENT_BACKOFF_MAX = 10.0

_ENGINES: dict = {}


@dataclass(frozen=True)
class Outcome:
    instance_id: int
    copies: tuple[CleanCopy, ...] = ()
    reason: str = ""
    stage: str = ""
    changes: int = 0
    problems: tuple[str, ...] = ()  # pydicom's warnings, by tag and kind (no values), for the audit
    transient: bool = False  # failed for a reason that passes (a full disk): redo, do not quarantine

    @property
    def clean(self) -> bool:
        return bool(self.copies)


WORKER_NICENESS = 10  # where SCHED_IDLE is not available


def _yield_to_the_node() -> None:
    """Run the workers only on CPU time nothing else in the node wants (SCHED_IDLE).

    The queue is durable, so de-identifying can wait; acknowledging cannot. With the workers
    at nice 10 the receiver still lost about a quarter of its rate to them on two cores
    (each of its wake-ups waited behind a worker); under SCHED_IDLE it keeps its isolated rate
    and the workers still get every idle cycle."""
    import os

    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(WORKER_NICENESS)


def _init_process(config: Config, node_pid: int) -> None:
    quiet_library_warnings()
    _yield_to_the_node()
    _ENGINES.update(build_engines(config))
    # polled, not PR_SET_PDEATHSIG: that fires when the *thread* that spawned the process ends,
    # and the pool spawns workers from whichever thread submits
    exit_when_orphaned(node_pid)


def _warm_up(seconds: float) -> int:
    import os
    import time

    time.sleep(seconds)  # long enough that each warm-up call lands in its own process
    return os.getpid()


def engine_key(dest_name: str, engines: dict) -> str:
    return dest_name if dest_name in engines else ""


def write_outbox(data: Encoded | bytes, path: Path) -> None:
    """Temp file + rename, without fsync: an outbox file is derived data. After an unclean
    stop the node re-derives every clean-but-unforwarded instance from its raw file (see
    Node.start), so a file a power cut truncated is never sent. Saves two fsyncs per instance
    that would otherwise queue in front of the SCP's own."""
    write_atomic(data, path, mode=0o600, durable=False)  # piece by piece: pixel data is not joined


def process_file(instance_id: int, raw_path: str, outbox: str, destinations: tuple[str, ...]) -> Outcome:
    """In a worker process: raw file in, clean file(s) out. Never raises. What pydicom warns
    about meanwhile goes into the outcome (and the audit event) by tag, without values."""
    from dataclasses import replace

    from gantry_node.engine.library_warnings import instance_problems

    with instance_problems(raw_path) as problems:
        outcome = _process_file(instance_id, raw_path, outbox, destinations)
    return replace(outcome, problems=tuple(str(p) for p in problems)) if problems else outcome


def _process_file(instance_id: int, raw_path: str, outbox: str, destinations: tuple[str, ...]) -> Outcome:
    from gantry_node.engine.pipeline import Quarantine, process
    from gantry_node.io.part10 import BadInput, clean_path, read_instance

    try:
        ds = read_instance(raw_path)
    except BadInput as exc:
        return Outcome(instance_id, reason=f"unreadable instance: {exc.problem}", stage="read")
    except Exception as exc:  # noqa: BLE001 -- fail closed
        return Outcome(instance_id, reason=f"cannot read: {type(exc).__name__}", stage="read")
    written: dict[str, tuple] = {}
    copies = []
    try:
        for dest in destinations:
            key = engine_key(dest, _ENGINES)
            if key not in written:
                clean = process(ds, _ENGINES[key])
                out = clean.dataset
                path = clean_path(Path(outbox) / (key or "_node"), out)
                write_outbox(clean.encoded, path)  # the bytes that were verified
                written[key] = (str(path), str(out.SOPInstanceUID), str(out.get("StudyInstanceUID", "")),
                                str(out.get("SeriesInstanceUID", "")), str(out.SOPClassUID),
                                str(out.file_meta.TransferSyntaxUID), len(clean.changes))
            p, uid, study, series, sop_class, ts, _ = written[key]
            copies.append(CleanCopy(dest, p, uid, study, series, sop_class, ts))
    except Quarantine as q:
        return Outcome(instance_id, reason=q.reason, stage=q.stage or "pipeline")
    except OSError as exc:
        return Outcome(instance_id, reason=f"cannot write the outbox: {exc.strerror or type(exc).__name__}",
                       stage="write", transient=exc.errno in TRANSIENT_ERRNOS)
    except Exception as exc:  # noqa: BLE001 -- fail closed: nothing unverified leaves
        return Outcome(instance_id, reason=f"unexpected {type(exc).__name__} while processing", stage="pipeline")
    return Outcome(instance_id, tuple(copies), changes=next(iter(written.values()))[6])


class Dispatcher:
    """Claims rows and feeds the process pool, keeping a bounded number in flight.

    Two supervised components: `run` (claim and submit) and `record_loop` (record outcomes)."""

    def __init__(self, config: Config, store: Store, audit: Audit, stop: threading.Event,
                 on_clean=lambda: None):
        self.config, self.store, self.audit, self.stop_event = config, store, audit, stop
        self.on_clean = on_clean
        self.wakeup = threading.Event()
        self.slots = threading.Semaphore(config.workers * 4)
        self.destinations = tuple(d.name for d in config.effective_destinations())
        self.pool = self._new_pool()
        self.results: queue.Queue = queue.Queue()
        self.inflight: set[int] = set()  # rows handed to a worker and not yet recorded
        self._inflight_lock = threading.Lock()
        self._recording: list[tuple[Future, Instance]] = []  # the batch in hand (kept across a restart)
        self._started = False
        self.transient_failures = 0
        self.paused_until = 0.0

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.config.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_process, initargs=(self.config, os.getpid()))

    def warm_up(self) -> None:
        """Start every worker process now (each imports the engine, about a second), not when
        the first study arrives."""
        for f in [self.pool.submit(_warm_up, 0.2) for _ in range(self.config.workers)]:
            f.result()

    def run(self) -> None:
        if self._started:
            # restarted after a failure: rows it claimed but never handed to a worker
            with self._inflight_lock:
                keep = set(self.inflight)
            self.store.requeue_processing(keep=keep, uncount=True)
        self._started = True
        while not self.stop_event.is_set():
            if time.monotonic() < self.paused_until:
                self.stop_event.wait(min(0.5, self.paused_until - time.monotonic()))
                continue
            rows = self.store.claim(self.config.batch)
            if not rows:
                # new rows are committed by the receiver process: poll the index for them
                self.wakeup.wait(POLL_SECONDS)
                self.wakeup.clear()
                continue
            for row in rows:
                if row.process_attempts > MAX_PROCESS_ATTEMPTS:
                    self._quarantine(row.id, "processing crashed the worker repeatedly", "worker")
                    continue
                while not self.slots.acquire(timeout=0.5):
                    if self.stop_event.is_set():
                        return
                try:
                    self._submit(row)
                except StoreError:
                    self.slots.release()
                    raise
                except Exception as exc:  # noqa: BLE001 -- this row cannot be dispatched: it alone is held
                    self.slots.release()
                    self._quarantine(row.id, f"cannot dispatch: {type(exc).__name__}", "worker")

    def _submit(self, row: Instance) -> None:
        with self._inflight_lock:
            self.inflight.add(row.id)
        try:
            try:
                future = self.pool.submit(process_file, row.id, row.raw_path, str(self.config.outbox.resolve()),
                                          self.destinations)
            except BrokenProcessPool:
                self.pool = self._new_pool()
                future = self.pool.submit(process_file, row.id, row.raw_path, str(self.config.outbox.resolve()),
                                          self.destinations)
        except BaseException:
            with self._inflight_lock:
                self.inflight.discard(row.id)
            raise
        # the callback runs on the pool's own thread, which also feeds the workers: it only
        # hands the result over; the recorder thread does the (lock-taking) bookkeeping
        future.add_done_callback(lambda f, r=row: self.results.put((f, r)))

    def record_loop(self) -> None:
        """Record outcomes until `shutdown`. If recording raises, the batch stays in hand and
        the supervisor's restart records what is left of it."""
        while True:
            if not self._recording:
                item = self.results.get()
                if item is None:
                    return
                self._recording = [item]
                while len(self._recording) < 64:
                    try:
                        more = self.results.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self.results.put(None)
                        break
                    self._recording.append(more)
            self._record(self._recording)

    def _done(self, items: list[tuple[Future, Instance]]) -> None:
        """These are recorded: out of the batch in hand, their slots free."""
        ids = {row.id for _, row in items}
        self._recording = [(f, r) for f, r in self._recording if r.id not in ids]
        with self._inflight_lock:
            self.inflight -= ids
        for _ in items:
            self.slots.release()

    def _record(self, batch: list[tuple[Future, Instance]]) -> None:
        """Record each outcome; a store error escapes (to the supervisor) with what is not yet
        recorded still in the batch. Steps are idempotent, so a redo does no harm."""
        clean: list[tuple[Outcome, tuple[Future, Instance]]] = []
        for item in list(batch):
            future, row = item
            try:
                outcome: Outcome = future.result()
            except CancelledError:
                self._done([item])
                continue  # shutting down: the row stays in processing and is redone on the next start
            except BrokenProcessPool:
                # a worker process died (e.g. a codec crashed): redo later; attempts are counted
                self.store.requeue_one(row.id)
                self.wakeup.set()
                self._done([item])
                continue
            except Exception as exc:  # noqa: BLE001
                outcome = Outcome(row.id, reason=f"worker error {type(exc).__name__}", stage="worker")
            if outcome.clean:
                clean.append((outcome, item))
            elif outcome.transient:
                self.store.requeue_one(row.id, uncount=True)
                self._hold_off(row.id, outcome.reason)
                self._done([item])
            else:
                self._quarantine(row.id, outcome.reason, outcome.stage, outcome.problems)
                self._done([item])
        if clean:
            self.store.mark_clean_many([(o.instance_id, list(o.copies)) for o, _ in clean])
            self._done([item for _, item in clean])
            self.transient_failures = 0
            for o, _ in clean:
                first = o.copies[0]
                self.audit.event("deidentified", instance=o.instance_id, sop_uid=first.clean_uid,
                                 study_uid=first.study_uid, series_uid=first.series_uid, changes=o.changes,
                                 **_problems(o.problems))
            self.on_clean()

    def _hold_off(self, instance_id: int, reason: str) -> None:
        """A worker could not write (a full disk): claim nothing for a while, then redo."""
        self.transient_failures += 1
        wait = min(TRANSIENT_BACKOFF_MAX, TRANSIENT_BACKOFF_INITIAL * 2 ** min(self.transient_failures - 1, 16))
        self.paused_until = max(self.paused_until, time.monotonic() + wait)
        self.audit.event("store_failed", level="warning", instance=instance_id, stage="write", reason=reason,
                         retry_in=round(wait, 2))

    def _quarantine(self, instance_id: int, reason: str, stage: str, problems: tuple[str, ...] = ()) -> None:
        self.store.mark_quarantined(instance_id, reason, stage)
        self.audit.event("quarantined", level="warning", instance=instance_id, reason=reason, stage=stage,
                         **_problems(problems))

    def shutdown(self) -> None:
        """After the claim loop has stopped: finish or cancel what the workers hold, then end
        the recorder (it records what finished)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.results.put(None)


def _problems(problems: tuple[str, ...]) -> dict[str, list[str]]:
    """The audit field for pydicom's warnings about an instance: absent when there were none."""
    return {"problems": list(problems)} if problems else {}
