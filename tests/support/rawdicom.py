"""Raw-socket DICOM peers for tests of the node's connection handling: bare connects, slow
senders, PDUs written a byte at a time. The PDUs are encoded by pynetdicom."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

from pynetdicom.pdu import A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    P_DATA,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context

VERIFICATION = "1.2.840.10008.1.1"


def associate_rq(calling: str = "SLOW", called: str = "GANTRY") -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing Verification."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    cx = build_context(VERIFICATION)
    cx.context_id = 1
    primitive.presentation_context_definition_list = [cx]
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16384
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.1"
    primitive.user_information = [max_length, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def p_data(size: int = 200) -> bytes:
    """A P-DATA-TF PDU with one command fragment of `size` bytes (its content never matters:
    the tests send it too slowly to be read)."""
    primitive = P_DATA()
    primitive.presentation_data_value_list = [[1, b"\x03" + b"\x00" * size]]
    pdu = P_DATA_TF()
    pdu.from_primitive(primitive)
    return pdu.encode()


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """True if the node closes the connection (EOF or reset) within `timeout`."""
    s.settimeout(timeout)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@dataclass
class Trickle:
    """Sends `data` one byte every `interval` seconds until done or the node cuts it off."""

    sock: socket.socket
    data: bytes
    interval: float
    sent: int = 0
    cut_off: bool = False
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for i in range(len(self.data)):
            try:
                self.sock.send(self.data[i:i + 1])
            except OSError:
                self.cut_off = True
                return
            self.sent += 1
            time.sleep(self.interval)

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
