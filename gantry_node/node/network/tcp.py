"""Socket options pynetdicom does not set itself.

pynetdicom leaves Nagle's algorithm on. A C-STORE response is a small write that then waits
for the peer's delayed ACK (about 40 ms on Linux loopback) before it leaves, which caps a
single association at roughly 25 instances per second. An EVT_CONN_OPEN handler, bound on
both the SCP and the SCU, switches it off as soon as the connection exists.
"""

from __future__ import annotations

import socket

from pynetdicom import evt


def set_nodelay(event: evt.Event) -> None:
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def nodelay_handlers(enabled: bool = True) -> list:
    return [(evt.EVT_CONN_OPEN, set_nodelay)] if enabled else []
