"""The C-STORE SCU towards one DICOM destination.

One association is kept open and reused across instances. It proposes the (SOP class,
transfer syntax) pairs of the clean files waiting to go, each in a presentation context of its
own; when a file needs a pair the open association did not propose, the association is
released and a new one negotiated. Files are streamed from disk (pynetdicom's chunked send).

A destination need not accept every compressed transfer syntax (dcmtk's storescp refuses JPEG
Lossless process 14, many archives refuse JPEG-LS). For each SOP class with compressed files,
an uncompressed context is proposed too, and a file whose own syntax was refused is sent
decoded, in Explicit VR Little Endian, if `destinations[].decompress` allows it: `lossless`
(the default, as dcmsend's) for lossless and deflated syntaxes, `always` for lossy ones too.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import P_DATA

from gantry_node.engine.pixels.codec import LOSSY_SYNTAXES, PixelDecodeError, to_native
from gantry_node.node.config import Destination
from gantry_node.node.network.tcp import nodelay_handlers
from gantry_node.node.network.tls import client_context

_config.STORE_SEND_CHUNKED_DATASET = True

MAX_CONTEXTS = 128
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
WARNINGS = {
    0xB000: "coercion of data elements",
    0xB006: "elements discarded",
    0xB007: "data set does not match SOP class",
}


@dataclass(frozen=True)
class SendResult:
    delivered: bool
    status: int | None
    note: str  # operator-readable, no PHI
    transport: bool = False  # the destination could not be reached or talked to: back off it
    poison: bool = False  # sending this instance raised: it fails alone, at once (no retry)
    decompressed_from: str | None = None  # sent decoded: the file's own syntax was not accepted

    @property
    def warning(self) -> bool:
        return self.delivered and self.status in WARNINGS


def _responses_to_sender_only(assoc: Association) -> None:
    """Keep the association's reactor thread from taking our C-STORE responses.

    pynetdicom pauses the reactor around each send_c_store, but the pause can be observed
    before it has taken effect: the reactor's `_is_paused` flag is still True from the check it
    has just passed. The reactor then takes the response off the queue (and drops it), and
    send_c_store waits out the whole DIMSE timeout (measured: about one send in 600 under load,
    each a 30 s stall and an aborted association). The reactor only ever polls without
    blocking, the sending thread always blocks; our associations carry nothing but our own
    requests and their responses, so the reactor's poll is answered with "nothing".
    """
    dimse = assoc.dimse
    get_msg = dimse.get_msg

    def sender_only(block: bool = False):
        return get_msg(block=True) if block else (None, None)

    dimse.get_msg = sender_only


MAX_QUEUED_BYTES = 4 * 1024 * 1024  # of P-DATA waiting for the socket, per association


def _bounded_sends(assoc: Association) -> None:
    """Keep at most about MAX_QUEUED_BYTES of P-DATA PDUs of a send waiting for the socket.

    With chunked sending pynetdicom reads the file a PDU at a time, but puts every PDU in the
    reactor's queue (unbounded) as fast as the disk gives them: a 1 GiB instance to a slower
    destination was held in the node's memory almost whole (0.69 GB). Here the sending thread
    waits until the reactor has taken PDUs off the queue. The queue's own condition is
    notified by every `get`; a reactor that stops (abort, lost connection) ends the wait.
    """
    dul = assoc.dul
    send_pdu = dul.send_pdu
    pending = dul.to_provider_queue
    # counted in PDUs of the destination's maximum length: an ordinary CT slice never waits
    limit = max(16, MAX_QUEUED_BYTES // max(1, int(assoc.dimse.maximum_pdu_size or 0) or 16384))

    def bounded(primitive) -> None:
        if isinstance(primitive, P_DATA):
            with pending.not_full:
                while pending._qsize() >= limit and dul.is_alive() and not dul._kill_thread:
                    pending.not_full.wait(0.05)
        send_pdu(primitive)

    dul.send_pdu = bounded


def _name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else uid


def needs_decoding(transfer_syntax: str) -> bool:
    return transfer_syntax not in UNCOMPRESSED


class DicomPeer:
    """Sends files to one destination over a reused association."""

    def __init__(self, dest: Destination, calling_ae: str, tcp_nodelay: bool = True):
        self.dest = dest
        self.calling_ae = calling_ae
        self.tcp_nodelay = tcp_nodelay
        self.assoc: Association | None = None
        self.proposed: frozenset[tuple[str, str]] = frozenset()
        self.contexts: frozenset[tuple[str, str]] = frozenset()  # accepted (SOP class, syntax)
        self._tls_context: ssl.SSLContext | None = None

    def may_decompress(self, transfer_syntax: str) -> bool:
        if self.dest.decompress == "never" or not needs_decoding(transfer_syntax):
            return False
        return self.dest.decompress == "always" or transfer_syntax not in LOSSY_SYNTAXES

    def _contexts(self, pairs: set[tuple[str, str]]) -> list[tuple[str, list[str]]]:
        """Presentation contexts to propose: each pair, then an uncompressed one per SOP class
        whose files may be sent decompressed; at most MAX_CONTEXTS."""
        own = [(sop, [ts]) for sop, ts in sorted(pairs)]
        fallback = sorted({sop for sop, ts in pairs if self.may_decompress(ts)})
        return (own + [(sop, list(UNCOMPRESSED)) for sop in fallback])[:MAX_CONTEXTS]

    def _tls_args(self) -> tuple[ssl.SSLContext, str | None] | None:
        """destinations[].tls: pynetdicom's (context, server_hostname); the context is built
        once (it was checked at start), the handshake runs within the connection timeout."""
        if self.dest.tls is None:
            return None
        if self._tls_context is None:
            self._tls_context = client_context(self.dest.tls, f"destinations[{self.dest.name}].tls")
        return self._tls_context, self.dest.host

    def ensure(self, pairs: set[tuple[str, str]]) -> SendResult | None:
        """An association that proposed every pair (up to MAX_CONTEXTS); None, or why not."""
        if self.assoc is not None and self.assoc.is_established and pairs <= self.proposed:
            return None
        self.close()
        contexts = self._contexts(pairs)
        ae = AE(ae_title=self.calling_ae)
        ae.maximum_pdu_size = self.dest.max_pdu
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.dest.timeout
        ae.connection_timeout = self.dest.timeout
        for sop_class, syntaxes in contexts:
            ae.add_requested_context(sop_class, syntaxes)
        assoc = ae.associate(self.dest.host, self.dest.port, ae_title=self.dest.ae_title,
                             evt_handlers=nodelay_handlers(self.tcp_nodelay), tls_args=self._tls_args())
        if not assoc.is_established:
            if assoc.is_rejected:
                return SendResult(False, None, "association rejected by the destination", transport=True)
            if assoc.rejected_contexts and not assoc.accepted_contexts:
                refused = sorted({f"{_name(sop)} in {_name(ts)}" for sop, syntaxes in contexts for ts in syntaxes})
                return SendResult(False, None, "destination accepts none of the proposed presentation contexts: "
                                  + "; ".join(refused[:4]) + (" ..." if len(refused) > 4 else ""))
            return SendResult(False, None, "cannot associate (connection refused, timed out or aborted)",
                              transport=True)
        _responses_to_sender_only(assoc)
        _bounded_sends(assoc)
        self.assoc = assoc
        self.proposed = frozenset((sop, ts) for sop, syntaxes in contexts for ts in syntaxes if len(syntaxes) == 1)
        self.contexts = frozenset((str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                                  for cx in assoc.accepted_contexts)
        return None

    def send(self, path: str, sop_class: str, transfer_syntax: str) -> SendResult:
        if (sop_class, transfer_syntax) in self.contexts:
            return self._store(path)
        uncompressed = any((sop_class, ts) in self.contexts for ts in UNCOMPRESSED)
        refused = f"destination does not accept {_name(sop_class)} in {_name(transfer_syntax)}"
        if not uncompressed or not needs_decoding(transfer_syntax):
            return SendResult(False, None, refused)
        if not self.may_decompress(transfer_syntax):
            return SendResult(False, None, f"{refused} (decompress: {self.dest.decompress})")
        try:
            ds = dcmread(path)
            to_native(ds)
        except (OSError, InvalidDicomError, PixelDecodeError) as exc:
            return SendResult(False, None, f"{refused}, and cannot decompress: {exc}")
        except Exception as exc:  # noqa: BLE001 -- a file pydicom chokes on fails alone
            return SendResult(False, None, f"send failed: cannot decompress: {type(exc).__name__}", poison=True)
        return self._store(ds, transfer_syntax)

    def _store(self, data, decompressed_from: str | None = None) -> SendResult:
        assert self.assoc is not None
        try:
            response = self.assoc.send_c_store(data)
        except Exception as exc:  # noqa: BLE001 -- one instance's failure, never the thread's
            established = self._established()
            self.close(abort=True)
            if isinstance(exc, OSError) or not established:
                # the connection went away (pynetdicom raises RuntimeError or AttributeError
                # when the peer aborted under it): back off the destination
                return SendResult(False, None, f"cannot send: {type(exc).__name__}", transport=True)
            # the association was fine and pynetdicom refused this instance, e.g. TypeError
            # for a SOP Instance UID with two values, ValueError for a data set it cannot
            # encode. It fails alone; the association is aborted all the same (after an
            # exception its state is unknown) and the next instance negotiates a fresh one.
            return SendResult(False, None, f"send failed: {type(exc).__name__}", poison=True)
        status = getattr(response, "Status", None)
        if status is None:
            # the association is in an unknown state: abort it, so neither side waits on it
            self.close(abort=True)
            return SendResult(False, None, "no response (timeout, abort or lost connection)", transport=True)
        status = int(status)
        if status == 0x0000:
            return SendResult(True, status, "success", decompressed_from=decompressed_from)
        if status in WARNINGS:
            return SendResult(True, status, f"warning 0x{status:04X}: {WARNINGS[status]}",
                              decompressed_from=decompressed_from)
        return SendResult(False, status, f"failure status 0x{status:04X}")

    def _established(self) -> bool:
        try:
            return self.assoc is not None and bool(self.assoc.is_established)
        except Exception:  # noqa: BLE001
            return False

    def close(self, abort: bool = False) -> None:
        if self.assoc is not None:
            try:
                if self.assoc.is_established and not abort:
                    self.assoc.release()
                else:
                    self.assoc.abort()
            except Exception:  # noqa: BLE001 -- closing a broken association must not raise
                pass
        self.assoc = None
        self.proposed = frozenset()
        self.contexts = frozenset()
