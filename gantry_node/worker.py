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
import threading
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from gantry_node.audit import Audit
from gantry_node.config import Config, build_engines
from gantry_node.store import Instance, Store
from gantry_node.store.db import CleanCopy

MAX_PROCESS_ATTEMPTS = 3  # a file that keeps killing worker processes is quarantined

_ENGINES: dict = {}


@dataclass(frozen=True)
class Outcome:
    instance_id: int
    copies: tuple[CleanCopy, ...] = ()
    reason: str = ""
    stage: str = ""
    changes: int = 0

    @property
    def clean(self) -> bool:
        return bool(self.copies)


def _init_process(config: Config) -> None:
    _ENGINES.update(build_engines(config))


def engine_key(dest_name: str, engines: dict) -> str:
    return dest_name if dest_name in engines else ""


def process_file(instance_id: int, raw_path: str, outbox: str, destinations: tuple[str, ...]) -> Outcome:
    """In a worker process: raw file in, clean file(s) out. Never raises."""
    from gantry_node.dicomio import BadInput, clean_path, encode_instance, read_instance, write_atomic
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
                write_atomic(encode_instance(out), path)
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

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.config.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_process, initargs=(self.config,))

    def run(self) -> None:
        while not self.stop_event.is_set():
            rows = self.store.claim(self.config.batch)
            if not rows:
                self.wakeup.wait(0.2)
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
        future.add_done_callback(lambda f, r=row: self._done(f, r))

    def _done(self, future: Future, row: Instance) -> None:
        try:
            try:
                outcome: Outcome = future.result()
            except CancelledError:
                return  # shutting down: the row stays in processing and is redone on the next start
            except BrokenProcessPool:
                # a worker process died (e.g. a codec crashed): redo later; attempts are counted
                self.store.requeue_one(row.id)
                self.wakeup.set()
                return
            except Exception as exc:  # noqa: BLE001
                outcome = Outcome(row.id, reason=f"worker error {type(exc).__name__}", stage="worker")
            if outcome.clean:
                self.store.mark_clean(row.id, list(outcome.copies))
                first = outcome.copies[0]
                self.audit.event("deidentified", instance=row.id, sop_uid=first.clean_uid, study_uid=first.study_uid,
                                 series_uid=first.series_uid, changes=outcome.changes)
                self.on_clean()
            else:
                self._quarantine(row.id, outcome.reason, outcome.stage)
        except Exception as exc:  # noqa: BLE001 -- the row stays in processing and is redone on restart
            self.audit.event("store_failed", level="error", instance=row.id, reason=f"{type(exc).__name__}")
        finally:
            self.slots.release()

    def _quarantine(self, instance_id: int, reason: str, stage: str) -> None:
        self.store.mark_quarantined(instance_id, reason, stage)
        self.audit.event("quarantined", level="warning", instance=instance_id, reason=reason, stage=stage)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
