"""The receiver: the C-STORE SCP in a process of its own.

Acknowledging an instance is a chain of waits, one instance at a time per association: read
the PDUs, write and fsync the file, commit the row, answer. In the node's main process that
chain shared the GIL with the forwarders' SCUs, the dispatcher and the audit flush, and ran at
about a third of its own speed. Here it only shares it with its own threads, and it keeps
normal priority while the workers run below it.

The process opens its own Store connection (SQLite WAL serialises the writers) and Audit;
the dispatcher in the main process finds the new rows by polling the index. The two processes
share nothing else but one pipe: the receiver reports "ready" (or why it cannot listen) on it,
and stops when the main process says "stop" or the pipe closes. No multiprocessing Event or
lock is shared: a process killed while holding one would hang the other. The receiver ignores
SIGTERM and SIGINT, so the main process stops it in order (associations in progress finish);
if the main process dies the kernel kills it (PR_SET_PDEATHSIG), so a killed node never
leaves a receiver holding the port.

`node.receivers: N` runs N such processes, each with its own pynetdicom AE and GIL, all bound
to node.port with SO_REUSEPORT (the kernel spreads new connections across them). The
accept-time gate stays one per node: the receivers count associations together in lock files
(`SharedSlots`, network/gate.py), whose locks the kernel drops when a receiver dies.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection

from gantry_node.node.config import Config
from gantry_node.node.orphans import die_with_parent

START_TIMEOUT = 60.0
DRAIN_SECONDS = 20.0  # on stop, how long associations in progress may go on (systemd waits 60 s)


def gate_dir(config: Config):
    """Where the receivers of one node count their associations together (network/gate.py)."""
    return config.data_dir / "gate"


def probe_port(config: Config) -> None:
    """With node.receivers above 1 every receiver binds with SO_REUSEPORT, which another
    process of the same user that does so too could share silently: bind each listening port
    once without it first, so a port in use is the same clear error as with one receiver."""
    import socket

    from gantry_node.node.network.scp import listeners

    for port, _tls in listeners(config.node):
        family = socket.AF_INET6 if ":" in config.node.bind else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT left by a restart
            try:
                probe.bind((config.node.bind, port))
                probe.listen(1)
            except OSError as exc:
                raise ReceiverError(exc.errno or 0, exc.strerror or type(exc).__name__) from None


class ReceiverError(OSError):
    """The receiver could not start (typically: the port cannot be bound)."""


class Receiver:
    def __init__(self, config: Config):
        self.config = config
        ctx = multiprocessing.get_context("spawn")
        self._pipe, child_end = ctx.Pipe()
        self.process = ctx.Process(target=_run, name="gantry-receiver", args=(config, child_end, os.getpid()),
                                   daemon=True)

    def start(self) -> None:
        """Start the process and wait until it listens; ReceiverError if it cannot."""
        self.process.start()
        if not self._pipe.poll(START_TIMEOUT):
            self.stop()
            raise ReceiverError(0, "the receiver did not start in time")
        try:
            message = self._pipe.recv()
        except EOFError:
            message = ("error", 0, "the receiver exited while starting")
        if message[0] != "ready":
            self.process.join(timeout=5)
            raise ReceiverError(message[1], message[2])

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.pid is None:
            return
        with contextlib.suppress(OSError):
            self._pipe.send("stop")
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def _run(config: Config, pipe: Connection, parent_pid: int) -> None:
    """In the receiver process."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    die_with_parent(parent_pid, PROCESS_NAME)
    from gantry_node.io.settings import load_keys
    from gantry_node.node.audit_log import Audit, quiet_library_warnings
    from gantry_node.node.network.gate import SharedSlots
    from gantry_node.node.network.scp import start_scp
    from gantry_node.node.store import Store
    from gantry_node.node.store.inbox import Inbox

    quiet_library_warnings()
    store = Store(config.db_path, pseudonym=load_keys(config.secret_path).uid)
    audit = Audit(store, config.audit_file, config.logging.stdout)
    try:
        try:
            several = config.node.receivers > 1
            scp = start_scp(config.node, Inbox(config.inbox.resolve()), store, audit, reuse_port=several,
                            shared=SharedSlots(gate_dir(config)) if several else None)
        except OSError as exc:
            pipe.send(("error", exc.errno or 0, exc.strerror or type(exc).__name__))
            return
        pipe.send(("ready",))
        with contextlib.suppress(EOFError, OSError):
            pipe.recv()  # "stop", or EOF when the main process is gone
        scp.shutdown()  # no new associations; the ones in progress go on in their threads
        deadline = time.monotonic() + DRAIN_SECONDS
        # only associations: a bare TCP connection (a port probe) is dropped by the ARTIM timer
        while scp.busy() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        audit.close()
        store.close()


PROCESS_NAME = b"gantry-receiver"  # what ps and /proc/PID/comm show (15 bytes at most)
