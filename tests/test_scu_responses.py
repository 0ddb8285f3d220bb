"""The forwarder's SCU keeps pynetdicom's reactor thread away from its C-STORE responses
(see `_responses_to_sender_only` in gantry_node/node/network/scu.py)."""

from __future__ import annotations

from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from gantry_node.node.config import Destination
from gantry_node.node.network.scu import DicomPeer
from tests.support.node import received_files, storescp, write_study


def test_reactor_poll_never_takes_a_message_and_sends_still_get_their_responses(tmp_path):
    write_study(tmp_path / "in", 40)
    with storescp(tmp_path / "out") as port:
        peer = DicomPeer(Destination("research", "dicom", "RESEARCH", "127.0.0.1", port, timeout=10), "GANTRY")
        assert peer.ensure({(CTImageStorage, ExplicitVRLittleEndian)}) is None
        try:
            queue = peer.assoc.dimse.msg_queue
            queue.put((1, "a message only the sending thread may take"))
            assert peer.assoc.dimse.get_msg(block=False) == (None, None)  # what the reactor calls
            assert queue.qsize() == 1
            assert peer.assoc.dimse.get_msg(block=True)[1] == "a message only the sending thread may take"
            results = [peer.send(str(p), CTImageStorage, ExplicitVRLittleEndian)
                       for p in sorted((tmp_path / "in").iterdir())]
        finally:
            peer.close()
    assert [r.status for r in results] == [0x0000] * 40
    assert len(received_files(tmp_path / "out")) == 40
