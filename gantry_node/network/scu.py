"""The C-STORE SCU towards one DICOM destination.

One association is kept open and reused across instances. It proposes exactly the
(SOP class, transfer syntax) pairs of the clean files waiting to go; when a file needs a pair
the open association lacks, the association is released and a new one negotiated. Files are
streamed from disk (pynetdicom's chunked send), never decoded again here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynetdicom import AE, _config
from pynetdicom.association import Association

from gantry_node.config import Destination
from gantry_node.network.tcp import nodelay_handlers

_config.STORE_SEND_CHUNKED_DATASET = True

MAX_CONTEXTS = 128
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


class DicomPeer:
    """Sends files to one destination over a reused association."""

    def __init__(self, dest: Destination, calling_ae: str, tcp_nodelay: bool = True):
        self.dest = dest
        self.calling_ae = calling_ae
        self.tcp_nodelay = tcp_nodelay
        self.assoc: Association | None = None
        self.contexts: frozenset[tuple[str, str]] = frozenset()

    def ensure(self, pairs: set[tuple[str, str]]) -> str | None:
        """An association accepting every pair (up to MAX_CONTEXTS); None or an error text."""
        if self.assoc is not None and self.assoc.is_established and pairs <= self.contexts:
            return None
        self.close()
        wanted = frozenset(sorted(pairs)[:MAX_CONTEXTS])
        ae = AE(ae_title=self.calling_ae)
        ae.maximum_pdu_size = self.dest.max_pdu
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.dest.timeout
        ae.connection_timeout = self.dest.timeout
        for sop_class, ts in sorted(wanted):
            ae.add_requested_context(sop_class, ts)
        assoc = ae.associate(self.dest.host, self.dest.port, ae_title=self.dest.ae_title,
                             evt_handlers=nodelay_handlers(self.tcp_nodelay))
        if not assoc.is_established:
            if assoc.is_rejected:
                return "association rejected by the destination"
            return "cannot associate (connection refused, timed out or aborted)"
        _responses_to_sender_only(assoc)
        self.assoc = assoc
        self.contexts = frozenset((str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                                  for cx in assoc.accepted_contexts)
        return None

    def send(self, path: str, sop_class: str, transfer_syntax: str) -> SendResult:
        if (sop_class, transfer_syntax) not in self.contexts:
            return SendResult(False, None, f"destination did not accept {sop_class} in {transfer_syntax}")
        assert self.assoc is not None
        try:
            response = self.assoc.send_c_store(path)
        except (OSError, ValueError, AttributeError, RuntimeError) as exc:
            self.close(abort=True)
            return SendResult(False, None, f"cannot send: {type(exc).__name__}")
        status = getattr(response, "Status", None)
        if status is None:
            # the association is in an unknown state: abort it, so neither side waits on it
            self.close(abort=True)
            return SendResult(False, None, "no response (timeout, abort or lost connection)")
        status = int(status)
        if status == 0x0000:
            return SendResult(True, status, "success")
        if status in WARNINGS:
            return SendResult(True, status, f"warning 0x{status:04X}: {WARNINGS[status]}")
        return SendResult(False, status, f"failure status 0x{status:04X}")

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
        self.contexts = frozenset()
