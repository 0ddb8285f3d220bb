"""The worker pool: de-identify received instances in separate processes.

A dispatcher thread in the node claims rows (received -> processing) and hands raw file paths
to a pool of processes; each process reads the file strictly, runs THE shared pipeline
(`gantry_node.pipeline.process`) once per distinct policy, and writes each clean instance
atomically to the outbox. The dispatcher records the outcome: clean (with one delivery per
destination) or quarantined with a reason an operator can read. Processes, not threads: the
pipeline is CPU-bound Python and must not starve the SCP of the GIL.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from gantry_node.audit import Audit, quiet_library_warnings
from gantry_node.config import Config, build_engines
from gantry_node.orphans import exit_when_orphaned
from gantry_node.store import Instance, Store
from gantry_node.store.db import CleanCopy

POLL_SECONDS = 0.05  # an indexed query; a new instance waits at most this long to be claimed
MAX_PROCESS_ATTEMPTS = 3  # a file that keeps killing worker processes is quarantined

_ENGINES: dict = {}


@dataclass(frozen=True)
class Outcome:
    instance_id: int
    copies: tuple[CleanCopy, ...] = ()
    reason: str = ""
    stage: str = ""
    changes: int = 0
    problems: tuple[str, ...] = ()  # pydicom's warnings, by tag and kind (no values), for the audit

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


def write_outbox(data: bytes, path: Path) -> None:
    """Temp file + rename, without fsync: an outbox file is derived data. After an unclean
    stop the node re-derives every clean-but-unforwarded instance from its raw file (see
    Node.start), so a file a power cut truncated is never sent. Saves two fsyncs per instance
    that would otherwise queue in front of the SCP's own."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def process_file(instance_id: int, raw_path: str, outbox: str, destinations: tuple[str, ...]) -> Outcome:
    """In a worker process: raw file in, clean file(s) out. Never raises. What pydicom warns
    about meanwhile goes into the outcome (and the audit event) by tag, without values."""
    from dataclasses import replace

    from gantry_node.library_warnings import instance_problems

    with instance_problems(raw_path) as problems:
        outcome = _process_file(instance_id, raw_path, outbox, destinations)
    return replace(outcome, problems=tuple(str(p) for p in problems)) if problems else outcome


def _process_file(instance_id: int, raw_path: str, outbox: str, destinations: tuple[str, ...]) -> Outcome:
    from gantry_node.dicomio import BadInput, clean_path, read_instance
    from gantry_node.pipeline import Quarantine, process

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
                       stage="write")
    except Exception as exc:  # noqa: BLE001 -- fail closed: nothing unverified leaves
        return Outcome(instance_id, reason=f"unexpected {type(exc).__name__} while processing", stage="pipeline")
    return Outcome(instance_id, tuple(copies), changes=next(iter(written.values()))[6])


class Dispatcher(threading.Thread):
    """Claims rows and feeds the process pool, keeping a bounded number in flight."""

    def __init__(self, config: Config, store: Store, audit: Audit, stop: threading.Event,
                 on_clean=lambda: None):
        super().__init__(name="dispatcher", daemon=True)
        self.config, self.store, self.audit, self.stop_event = config, store, audit, stop
        self.on_clean = on_clean
        self.wakeup = threading.Event()
        self.slots = threading.Semaphore(config.workers * 4)
        self.destinations = tuple(d.name for d in config.effective_destinations())
        self.pool = self._new_pool()
        self.results: queue.Queue = queue.Queue()
        self.recorder = threading.Thread(target=self._record_loop, name="recorder", daemon=True)
        self.recorder.start()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.config.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_process, initargs=(self.config, os.getpid()))

    def warm_up(self) -> None:
        """Start every worker process now (each imports the engine, about a second), not when
        the first study arrives."""
        for f in [self.pool.submit(_warm_up, 0.2) for _ in range(self.config.workers)]:
            f.result()

    def run(self) -> None:
        while not self.stop_event.is_set():
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
                self._submit(row)

    def _submit(self, row: Instance) -> None:
        try:
            future = self.pool.submit(process_file, row.id, row.raw_path, str(self.config.outbox.resolve()),
                                      self.destinations)
        except BrokenProcessPool:
            self.pool = self._new_pool()
            future = self.pool.submit(process_file, row.id, row.raw_path, str(self.config.outbox.resolve()),
                                      self.destinations)
        # the callback runs on the pool's own thread, which also feeds the workers: it only
        # hands the result over; the recorder thread does the (lock-taking) bookkeeping
        future.add_done_callback(lambda f, r=row: self.results.put((f, r)))

    def _record_loop(self) -> None:
        while True:
            item = self.results.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < 64:
                try:
                    more = self.results.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.results.put(None)
                    break
                batch.append(more)
            try:
                self._record(batch)
            except Exception as exc:  # noqa: BLE001 -- rows stay in processing and are redone on restart
                self.audit.event("store_failed", level="error", count=len(batch), reason=type(exc).__name__)
            finally:
                for _ in batch:
                    self.slots.release()

    def _record(self, batch: list[tuple[Future, Instance]]) -> None:
        clean: list[Outcome] = []
        for future, row in batch:
            try:
                outcome: Outcome = future.result()
            except CancelledError:
                continue  # shutting down: the row stays in processing and is redone on the next start
            except BrokenProcessPool:
                # a worker process died (e.g. a codec crashed): redo later; attempts are counted
                self.store.requeue_one(row.id)
                self.wakeup.set()
                continue
            except Exception as exc:  # noqa: BLE001
                outcome = Outcome(row.id, reason=f"worker error {type(exc).__name__}", stage="worker")
            if outcome.clean:
                clean.append(outcome)
            else:
                self._quarantine(row.id, outcome.reason, outcome.stage, outcome.problems)
        if clean:
            self.store.mark_clean_many([(o.instance_id, list(o.copies)) for o in clean])
            for o in clean:
                first = o.copies[0]
                self.audit.event("deidentified", instance=o.instance_id, sop_uid=first.clean_uid,
                                 study_uid=first.study_uid, series_uid=first.series_uid, changes=o.changes,
                                 **_problems(o.problems))
            self.on_clean()

    def _quarantine(self, instance_id: int, reason: str, stage: str, problems: tuple[str, ...] = ()) -> None:
        self.store.mark_quarantined(instance_id, reason, stage)
        self.audit.event("quarantined", level="warning", instance=instance_id, reason=reason, stage=stage,
                         **_problems(problems))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.results.put(None)
        self.recorder.join(timeout=10)


def _problems(problems: tuple[str, ...]) -> dict[str, list[str]]:
    """The audit field for pydicom's warnings about an instance: absent when there were none."""
    return {"problems": list(problems)} if problems else {}
