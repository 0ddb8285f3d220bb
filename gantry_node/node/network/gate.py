"""Who may hold the SCP's connections, and for how long.

pynetdicom counts every accepted TCP connection against `maximum_associations` from the
moment it is accepted, checks addresses only once an A-ASSOCIATE-RQ has arrived, and reads a
PDU with a blocking recv that a byte-a-second sender keeps alive forever. Ten bare connects
(a port scanner, a load balancer's health check) locked every sender out for a minute. Here:

- the address allow-list and `node.max_connections_per_address` are applied at accept
  (`GatedServer.verify_request`), before pynetdicom sees the socket;
- a connection takes one of `node.max_associations` (and of
  `node.max_associations_per_calling_ae`) only when its A-ASSOCIATE-RQ is accepted
  (`Gate.request`, from EVT_REQUESTED), and gives it back when the connection closes;
  pynetdicom's own count is switched off;
- the A-ASSOCIATE-RQ (and a TLS handshake before it) must be complete within
  `node.artim_timeout` of the connect (PS3.8 9.1.5, the ARTIM timer), and every later PDU
  within `node.network_timeout` of its first byte: the deadline is per PDU, not per byte
  (`PduDeadline`, a socket that follows the PDU framing of what it reads);
- each rejection and each abort is audited (`association_rejected`, `association_aborted`)
  with the reason, the peer address and the calling AE title (no value from a data set).

With `node.receivers` above 1 each receiver process has its own Gate, and the limits must
still hold for the node: the Gates then also take each slot from `SharedSlots`, byte-range
locks (open file description locks, F_OFD_SETLK) on small files in the data directory, one
byte per slot. A process that dies, even by SIGKILL, drops its locks with its files: a
shared counter no crash can leave stuck, where a counter in shared memory would keep a dead
receiver's slots (and a lock in shared memory could be held by a dead process forever).
Dividing the limits across receivers was the alternative: no shared state, but the kernel
spreads connections by a hash of their addresses, so one receiver could refuse an
association while the node as a whole is below its limit.

TLS is wrapped here too, in the connection's own thread: pynetdicom wraps accepted sockets
in the thread that accepts, so one client that never finishes its handshake would stop the
listener for every other.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import socketserver
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import evt
from pynetdicom.pdu_primitives import A_ABORT, A_P_ABORT
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from gantry_node.node.audit_log import Audit
from gantry_node.node.config import NodeSettings

# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # rejected-permanent, service-user, calling AE not recognized
REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)  # rejected-transient, service-provider (presentation), local limit exceeded

NO_LIMIT = 1_000_000  # pynetdicom's own association count: off (it counts bare connections)


def normalize_address(address: str) -> str:
    """The address as allow-lists match it: an IPv4 sender accepted on an IPv6 socket ("::")
    arrives as ::ffff:a.b.c.d and is matched (and logged) as a.b.c.d."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def address_allowed(address: str, allowed: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(normalize_address(address))
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(a, strict=False) for a in allowed)


class SharedSlots:
    """Slots shared by the node's receiver processes: `take(key, limit)` holds one of `limit`
    slots of `key` (a lock on one byte of the file `key`) until `release`. The lock belongs to
    the file descriptor (OFD lock), so two associations in one process count as two."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def take(self, key: str, limit: int) -> int | None:
        """A descriptor holding one slot, or None when all `limit` are taken."""
        fd = os.open(self.directory / key, os.O_RDWR | os.O_CREAT, 0o600)
        for slot in range(limit):
            lock = struct.pack("hhqqixxxx", fcntl.F_WRLCK, os.SEEK_SET, slot, 1, 0)  # struct flock
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
        os.close(fd)
        return None

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)  # and with it the lock

    @staticmethod
    def key(kind: str, name: str) -> str:
        """A file name for a calling AE title or an address (hex: any character is safe)."""
        return f"{kind}-{name.encode().hex()}"


@dataclass(eq=False)
class Connection:
    peer: str
    opened: float  # time.monotonic() at accept
    tls: bool
    calling_ae: str = ""
    requested: bool = False  # an A-ASSOCIATE-RQ arrived
    associated: bool = False  # holds an association slot
    rejected: bool = False  # already audited as rejected
    peer_abort: str | None = None  # what the ACSE received: an A-ABORT or an A-P-ABORT
    slots: list[int] = field(default_factory=list)  # SharedSlots descriptors this connection holds


@dataclass
class Gate:
    """The connection and association limits of one node (shared by its plain and TLS listeners)."""

    settings: NodeSettings
    audit: Audit
    shared: SharedSlots | None = None  # the node's other receivers count here too
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: list[Connection] = field(default_factory=list)

    def connect(self, address: str, tls: bool) -> Connection | None:
        """At accept: a Connection, or None (audited) when the address may not connect."""
        peer = normalize_address(address)
        s = self.settings
        reason = None
        with self._lock:
            if s.allowed_addresses and not address_allowed(peer, s.allowed_addresses):
                reason = "source address not allowed"
            elif (s.max_connections_per_address is not None
                  and sum(c.peer == peer for c in self._open) >= s.max_connections_per_address):
                reason = "too many connections from this address (node.max_connections_per_address)"
            else:
                conn = Connection(peer=peer, opened=time.monotonic(), tls=tls)
                if self._share(conn, "address", peer, s.max_connections_per_address):
                    self._open.append(conn)
                    return conn
                reason = "too many connections from this address (node.max_connections_per_address)"
        self.audit.event("association_rejected", level="warning", peer=peer, calling_ae="", reason=reason)
        return None

    def request(self, conn: Connection, calling_ae: str) -> tuple[str, tuple[int, int, int]] | None:
        """At A-ASSOCIATE-RQ: None when it may go on (it now holds a slot), else why not and
        the A-ASSOCIATE-RJ to send."""
        s = self.settings
        conn.requested, conn.calling_ae = True, calling_ae
        with self._lock:
            associated = [c for c in self._open if c.associated]
            if s.allowed_calling_aets and calling_ae not in s.allowed_calling_aets:
                refusal = "calling AE title not allowed", REJECT_CALLING_AE
            elif len(associated) >= s.max_associations:
                refusal = "too many associations (node.max_associations)", REJECT_LOCAL_LIMIT
            elif (s.max_associations_per_calling_ae is not None
                  and sum(c.calling_ae == calling_ae for c in associated) >= s.max_associations_per_calling_ae):
                refusal = ("too many associations from this calling AE title "
                           "(node.max_associations_per_calling_ae)"), REJECT_LOCAL_LIMIT
            elif not self._share(conn, "associations", "", s.max_associations):
                refusal = "too many associations (node.max_associations)", REJECT_LOCAL_LIMIT
            elif not self._share(conn, "ae", calling_ae, s.max_associations_per_calling_ae):
                refusal = ("too many associations from this calling AE title "
                           "(node.max_associations_per_calling_ae)"), REJECT_LOCAL_LIMIT
            else:
                conn.associated = True
                return None
        conn.rejected = True
        self.audit.event("association_rejected", level="warning", peer=conn.peer, calling_ae=calling_ae,
                         reason=refusal[0])
        return refusal

    def refused(self, conn: Connection, reason: str) -> None:
        """Refused before any A-ASSOCIATE-RQ (a failed TLS handshake)."""
        conn.rejected = True
        self.audit.event("association_rejected", level="warning", peer=conn.peer, calling_ae="", reason=reason)

    def ended(self, conn: Connection, assoc: Any, expired: str | None) -> None:
        """After the association's thread has ended: audit it if it did not end by a release."""
        if conn.rejected:
            return
        if expired:
            reason, level = expired, "warning"
        elif not conn.requested and time.monotonic() - conn.opened >= self.settings.artim_timeout:
            reason, level = "no A-ASSOCIATE-RQ within node.artim_timeout", "warning"
        elif not conn.requested:
            reason, level = "closed without an A-ASSOCIATE-RQ (a bare connect or an invalid PDU)", "info"
        elif assoc.is_released and not assoc.is_aborted:
            return
        elif conn.peer_abort:
            reason, level = conn.peer_abort, "warning"
        else:
            reason, level = "aborted by the node (nothing received within node.network_timeout)", "warning"
        self.audit.event("association_aborted", level=level, peer=conn.peer, calling_ae=conn.calling_ae,
                         reason=reason)

    def _share(self, conn: Connection, kind: str, name: str, limit: int | None) -> bool:
        """Take the node-wide slot too (with SharedSlots); False when the node has none left.
        A connection refused here gives back the slots it took so far (at close)."""
        if self.shared is None or limit is None:
            return True
        fd = self.shared.take(kind if kind == "associations" else SharedSlots.key(kind, name), limit)
        if fd is None:
            return False
        conn.slots.append(fd)
        return True

    def closed(self, conn: Connection) -> None:
        with self._lock:
            if conn in self._open:
                self._open.remove(conn)
            slots, conn.slots = conn.slots, []
        for fd in slots:
            SharedSlots.release(fd)

    def associations(self) -> int:
        with self._lock:
            return sum(c.associated for c in self._open)


class PduDeadline:
    """Mixed into the accepted socket (plain or TLS): each PDU must arrive whole within its
    deadline. The first (the A-ASSOCIATE-RQ) by `first_deadline`, each later one within
    `pdu_timeout` of its first byte. The socket reads the PDU framing (6-byte header with a
    32-bit length, then the body) from what passes through recv, so it does not depend on
    how pynetdicom splits its reads. An expired deadline is a TimeoutError, which pynetdicom
    treats as the connection closing (the association is aborted)."""

    _first: float | None = None
    _pdu_timeout: float | None = None
    _deadline: float | None = None
    _header = b""
    _body_left = 0
    expired: str | None = None

    def arm(self, first_deadline: float, pdu_timeout: float) -> None:
        self._first, self._pdu_timeout = first_deadline, pdu_timeout
        self._deadline, self._header, self._body_left = None, b"", 0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._pdu_timeout is None:  # not armed
            return super().recv(bufsize, flags)  # type: ignore[misc]
        if self._deadline is None:  # a new PDU starts here
            self._deadline = self._first if self._first is not None else time.monotonic() + self._pdu_timeout
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self._expire()
        self.settimeout(remaining)  # type: ignore[attr-defined]
        try:
            data = super().recv(bufsize, flags)  # type: ignore[misc]
        except TimeoutError:
            self._expire()
        finally:
            with _suppress_closed():
                self.settimeout(self._pdu_timeout)  # sends: a peer that stops reading  # type: ignore[attr-defined]
        self._follow(data)
        return data

    def _expire(self) -> None:
        self.expired = ("no complete A-ASSOCIATE-RQ within node.artim_timeout" if self._first is not None
                        else "a PDU did not arrive whole within node.network_timeout")
        raise TimeoutError(self.expired)

    def _follow(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._body_left:
                n = min(self._body_left, len(view))
                self._body_left -= n
                view = view[n:]
                if not self._body_left:
                    self._pdu_done()
                continue
            need = 6 - len(self._header)
            self._header += bytes(view[:need])
            view = view[need:]
            if len(self._header) == 6:
                self._body_left = struct.unpack(">L", self._header[2:6])[0]
                self._header = b""
                if not self._body_left:
                    self._pdu_done()

    def _pdu_done(self) -> None:
        self._deadline = None
        self._first = None


class _suppress_closed:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, tb) -> bool:
        return kind is not None and issubclass(kind, OSError)


class PduSocket(PduDeadline, socket.socket):
    """An accepted plain TCP socket with PDU deadlines."""


class PduSSLSocket(PduDeadline, ssl.SSLSocket):
    """An accepted TLS socket with PDU deadlines (the server context's sslsocket_class)."""


class GatedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the Gate at accept and TLS in the connection's thread."""

    daemon_threads = True

    def __init__(self, ae, address, ae_title, contexts, ssl_context=None, evt_handlers=None,
                 request_handler=None, *, gate: Gate, tls: ssl.SSLContext | None = None, reuse_port: bool = False):
        self.gate = gate
        self.tls = tls
        self.reuse_port = reuse_port  # node.receivers above 1: they all listen on node.port
        if tls is not None:
            tls.sslsocket_class = PduSSLSocket
        super().__init__(ae, address, ae_title, contexts, None, evt_handlers, request_handler or GatedHandler)

    def server_bind(self) -> None:
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, Any]:
        raw, address = self.socket.accept()
        sock = PduSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
        return sock, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        conn = self.gate.connect(str(client_address[0]), tls=self.tls is not None)
        if conn is None:
            return False  # socketserver closes it
        request.gantry_connection = conn
        return True

    def shutdown(self) -> None:
        """Stop accepting and close the listening socket (associations in progress go on)."""
        socketserver.BaseServer.shutdown(self)  # stop serve_forever (pynetdicom's also edits ae._servers)
        self.server_close()


class GatedHandler(RequestHandler):
    server: GatedServer

    def handle(self) -> None:
        gate, settings = self.server.gate, self.server.gate.settings
        conn: Connection = self.request.gantry_connection
        try:
            first_deadline = conn.opened + settings.artim_timeout
            if self.server.tls is not None and not self._handshake(conn, first_deadline):
                return
            self.request.arm(first_deadline, settings.network_timeout)
            assoc = self._create_association()
            assoc.gantry_connection = conn
            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            assoc.start()
            assoc.join()
            gate.ended(conn, assoc, self.request.expired)
        finally:
            gate.closed(conn)

    def _handshake(self, conn: Connection, deadline: float) -> bool:
        raw = self.request
        try:
            raw.settimeout(max(0.001, deadline - time.monotonic()))
            sock = self.server.tls.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            sock.do_handshake()
        except TimeoutError:
            self.server.gate.refused(conn, "TLS handshake not done within node.artim_timeout")
            _close(raw)
            return False
        except (ssl.SSLError, OSError) as exc:
            why = getattr(exc, "reason", None) or type(exc).__name__
            self.server.gate.refused(conn, f"TLS handshake failed: {why}")
            _close(raw)
            return False
        self.request = sock
        return True


def _close(sock: socket.socket) -> None:
    with _suppress_closed():
        sock.close()


def handle_acse_recv(event: evt.Event) -> None:
    """EVT_ACSE_RECV: remember how an aborted association was ended, for its audit row."""
    conn = getattr(event.assoc, "gantry_connection", None)
    primitive = getattr(event, "primitive", None)
    if conn is None or primitive is None:
        return
    if isinstance(primitive, A_P_ABORT):
        conn.peer_abort = "connection lost or invalid PDU (A-P-ABORT)"
    elif isinstance(primitive, A_ABORT):
        conn.peer_abort = "aborted by the peer (A-ABORT)"
