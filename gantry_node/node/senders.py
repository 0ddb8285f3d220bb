"""A destination's parallel associations (`destinations[].associations: N`, N above 1): N
sender processes, each a Forwarder (forwarder.py) with its own Store connection, Audit and
pynetdicom association, independent of the others' GIL and of the main process's.

Sender k of N takes only the deliveries of instances whose id is k modulo N
(`Store.due_deliveries(shard=...)`): the shares are disjoint, so no delivery is ever in two
senders' hands, and nothing has to be unclaimed after a crash. A sender killed mid-batch (even
by SIGKILL) leaves its deliveries pending; its restart sends them again (at-least-once, the
same UIDs), and an instance's copies (a correction after its original) stay in one sender,
in order.

In the main process each sender is one supervised component (`SenderProcess.run`): it starts
the process, passes wake-ups to it and the instances it completed back (for the cleanup
thread), and raises when the process ends while the node runs, so the supervisor restarts it
with backoff, or fails the node when it keeps dying. As the receiver, a sender shares nothing
with the main process but one pipe, ignores SIGTERM and SIGINT (the main process stops it in
order: its batch in progress is recorded) and dies with the main process (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from gantry_node.node.config import Config, Destination
from gantry_node.node.orphans import die_with_parent
from gantry_node.node.store import StoreError
from gantry_node.node.supervise import ComponentExited, transient

PROCESS_NAME = b"gantry-sender"
STOP_SECONDS = 30.0  # a batch in progress may take this long to finish on stop
WAKE_EVERY = 0.05  # the main process passes wake-ups on at most this often


class _Wake:
    """What the dispatcher sets when it has clean files (as a Forwarder's `wakeup`)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def set(self) -> None:
        self.event.set()


class SenderProcess:
    """One of a destination's senders; `run()` is the supervised component."""

    def __init__(self, config: Config, dest: Destination, index: int, stop: threading.Event,
                 on_forwarded: Callable[[list[int]], None]):
        self.config, self.dest, self.index = config, dest, index
        self.name = f"forward-{dest.name}-{index + 1}"
        self.stop_event = stop
        self.on_forwarded = on_forwarded
        self.wakeup = _Wake()
        self.pid: int | None = None

    def run(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        pipe, child_end = ctx.Pipe()
        process = ctx.Process(target=_run, name="gantry-sender", daemon=True,
                              args=(self.config, self.dest, (self.index, self.dest.associations), child_end,
                                    os.getpid()))
        process.start()
        child_end.close()
        self.pid = process.pid
        try:
            self._relay(pipe, process)
        finally:
            pipe.close()
            if process.is_alive():  # a failure here: the restart starts a fresh process
                process.kill()
            process.join(5)

    def _relay(self, pipe: Connection, process) -> None:
        stopping_since: float | None = None
        while True:
            if self.stop_event.is_set() and stopping_since is None:
                stopping_since = time.monotonic()
                with contextlib.suppress(OSError):
                    pipe.send("stop")
            elif self.wakeup.event.is_set() and stopping_since is None:
                self.wakeup.event.clear()
                with contextlib.suppress(OSError):
                    pipe.send("wake")
            try:
                message = pipe.recv() if pipe.poll(WAKE_EVERY) else None
            except (EOFError, OSError):
                message = ("ended",)
            if message is None:
                if stopping_since is not None and time.monotonic() - stopping_since > STOP_SECONDS:
                    raise ComponentExited("the sender process did not stop in time")
                continue
            if message[0] == "forwarded":
                self.on_forwarded(message[1])
                continue
            process.join(5)
            if message[0] == "failed":  # what escaped the Forwarder there, as it would here
                if message[2]:
                    raise StoreError(f"in the sender process: {message[1]}", transient=True)
                raise ComponentExited(f"the sender process failed ({message[1]})")
            if stopping_since is not None and process.exitcode == 0:
                return
            raise ComponentExited("the sender process exited")


def _run(config: Config, dest: Destination, shard: tuple[int, int], pipe: Connection, parent_pid: int) -> None:
    """In the sender process."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    die_with_parent(parent_pid, PROCESS_NAME)
    from gantry_node.node.audit_log import Audit, quiet_library_warnings
    from gantry_node.node.forwarder import Forwarder
    from gantry_node.node.store import Store

    quiet_library_warnings()
    stop = threading.Event()
    send_lock = threading.Lock()

    def send(message) -> None:
        with send_lock, contextlib.suppress(OSError):
            pipe.send(message)

    store = Store(config.db_path)
    audit = Audit(store, config.audit_file, config.logging.stdout)
    forwarder = Forwarder(dest, store, audit, config.node.ae_title, stop, lambda ids: send(("forwarded", ids)),
                          config.node.tcp_nodelay, shard=shard)

    def listen() -> None:
        with contextlib.suppress(EOFError, OSError):
            while pipe.recv() != "stop":
                forwarder.wakeup.set()
        stop.set()  # "stop", or the main process is gone
        forwarder.wakeup.set()

    threading.Thread(target=listen, name="sender-pipe", daemon=True).start()
    failed = None
    try:
        forwarder.run()
        if not stop.is_set():
            failed = ("ComponentExited", False)
    except Exception as exc:  # noqa: BLE001 -- reported to the main process's supervisor
        failed = (type(exc).__name__, transient(exc))
    finally:
        with contextlib.suppress(Exception):
            audit.close()
        store.close()
    send(("failed", *failed) if failed else ("stopped",))
    os._exit(1 if failed else 0)
