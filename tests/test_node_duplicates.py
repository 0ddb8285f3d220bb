"""A re-sent SOP Instance UID (issue 14, defect 3): a correction replaces the held copy or is
forwarded again, an identical re-send changes nothing, and a data set sent under another
instance's Affected SOP Instance UID is refused (0xA900). Real senders (dcmtk storescu;
pynetdicom where the Affected UID must be forged) and a real dcmtk storescp destination."""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE, _config

from tests.conftest import free_port
from tests.support.node import (
    dicom_destination,
    make_ct,
    node_config,
    received_files,
    running_node,
    storescp,
    storescu,
    wait_for,
)


def _events(tmp: Path, name: str) -> list[dict]:
    log = tmp / "data" / "audit.log"
    return [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == name]


def _states(tmp: Path) -> list[str]:
    with sqlite3.connect(tmp / "data" / "gantry.db") as conn:
        return [r[0] for r in conn.execute("SELECT state FROM instances ORDER BY id")]


def _version(tmp: Path, name: str, study: str, series: str, sop: str, index: int) -> Path:
    """One CT under `sop` whose content (pixels, Instance Number) is set by `index`."""
    path = tmp / "send" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    make_ct(study, series, sop, index).save_as(path, enforce_file_format=True)
    return path


def _instance_numbers(folder: Path) -> list[int]:
    return sorted(int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in received_files(folder))


def _sent(result) -> None:
    assert result.returncode == 0 and "Success" in result.stderr, result.stderr


def test_correction_before_forwarding_replaces_the_held_copy(tmp_path):
    """The destination is down: the first copy waits (clean, delivery pending); a corrected
    copy under the same UID replaces it; once the destination is up it receives only the
    correction."""
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    first = _version(tmp_path, "v1.dcm", study, series, sop, 1)
    corrected = _version(tmp_path, "v2.dcm", study, series, sop, 2)
    port, research_port = free_port(), free_port()
    config = node_config(tmp_path, port, destinations=[dicom_destination(
        "research", research_port, backoff_initial=0.5, backoff_max=1)])
    with running_node(config, port):
        _sent(storescu(port, first, extra=("-v",)))
        wait_for(lambda: _events(tmp_path, "delivery_retry"), 30, what="the first copy waiting")
        _sent(storescu(port, corrected, extra=("-v",)))
        with storescp(tmp_path / "research", port=research_port):
            wait_for(lambda: _states(tmp_path) == ["forwarded"], 60, what="forwarded")
        assert _instance_numbers(tmp_path / "research") == [2]
        [received] = [e for e in _events(tmp_path, "received") if e["outcome"] == "replaced"]
        assert received["state"] == "clean"
        # the forwarded pixels are the correction's
        [out] = received_files(tmp_path / "research")
        assert pydicom.dcmread(out).PixelData == pydicom.dcmread(corrected).PixelData


def test_correction_after_forwarding_is_forwarded_again_and_identical_resend_is_idempotent(tmp_path):
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    first = _version(tmp_path, "v1.dcm", study, series, sop, 1)
    corrected = _version(tmp_path, "v2.dcm", study, series, sop, 2)
    port = free_port()
    with storescp(tmp_path / "research") as research_port:
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)])
        with running_node(config, port):
            _sent(storescu(port, first, extra=("-v",)))
            wait_for(lambda: len(_events(tmp_path, "delivered")) == 1, 60, what="first delivery")
            # identical re-send of a forwarded instance: Success, nothing new
            _sent(storescu(port, first, extra=("-v",)))
            wait_for(lambda: _events(tmp_path, "duplicate"), 10, what="duplicate audited")
            assert _states(tmp_path) == ["forwarded"]
            # a correction: processed and forwarded again, under the same pseudonymous UID
            _sent(storescu(port, corrected, extra=("-v",)))
            wait_for(lambda: len(_events(tmp_path, "delivered")) == 2, 60, what="the correction delivered")
            wait_for(lambda: _states(tmp_path) == ["forwarded"], 30, what="forwarded again")
            # identical re-send of the correction: still nothing new
            _sent(storescu(port, corrected, extra=("-v",)))
            wait_for(lambda: len(_events(tmp_path, "duplicate")) == 2, 10, what="second duplicate")
    assert len(_events(tmp_path, "delivered")) == 2
    [correction] = [e for e in _events(tmp_path, "received") if e["outcome"] == "corrected"]
    assert correction["state"] == "forwarded"
    delivered = _events(tmp_path, "delivered")
    assert delivered[0]["sop_uid"] == delivered[1]["sop_uid"]
    files = received_files(tmp_path / "research")
    newest = max(files, key=lambda p: p.stat().st_mtime_ns)
    assert int(pydicom.dcmread(newest, stop_before_pixels=True).InstanceNumber) == 2


def test_data_set_under_another_instances_affected_uid_is_refused(tmp_path):
    """pynetdicom sends a file whose File Meta names instance A (the C-STORE's Affected SOP
    Instance UID) while its data set is instance B: 0xA900, nothing stored; B sent properly
    afterwards arrives."""
    study, series = generate_uid(), generate_uid()
    # two UIDs of one length, so that the File Meta can be edited in place
    uid_a, uid_b = (f"2.25.{secrets.randbelow(9 * 10**29) + 10**29}" for _ in range(2))
    a = _version(tmp_path, "a.dcm", study, series, uid_a, 1)
    b = _version(tmp_path, "b.dcm", study, series, uid_b, 2)
    forged = tmp_path / "send" / "forged.dcm"
    raw = b.read_bytes()  # pydicom would put the data set's own UID back into the File Meta
    forged.write_bytes(raw.replace(uid_b.encode(), uid_a.encode(), 1))
    ds = pydicom.dcmread(forged)
    assert (ds.file_meta.MediaStorageSOPInstanceUID, ds.SOPInstanceUID) == (uid_a, uid_b)
    port = free_port()
    with storescp(tmp_path / "research") as research_port:
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)])
        with running_node(config, port):
            _sent(storescu(port, a, extra=("-v",)))
            _config.STORE_SEND_CHUNKED_DATASET = True  # the Affected UID comes from the File Meta
            ae = AE(ae_title="FORGER")
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
            assoc = ae.associate("127.0.0.1", port, ae_title="GANTRY")
            assert assoc.is_established
            try:
                response = assoc.send_c_store(forged)
            finally:
                assoc.release()
            assert int(response.Status) == 0xA900
            assert "Affected SOP Instance UID" in str(response.ErrorComment)
            _sent(storescu(port, b, extra=("-v",)))
            wait_for(lambda: len(received_files(tmp_path / "research")) == 2, 60, what="a and b forwarded")
    assert _instance_numbers(tmp_path / "research") == [1, 2]
    [refused] = _events(tmp_path, "store_refused")
    assert refused["status"] == "0xA900" and refused["calling_ae"] == "FORGER"
    assert uid_a not in json.dumps(refused) and uid_b not in json.dumps(refused)
    assert not _events(tmp_path, "duplicate")
