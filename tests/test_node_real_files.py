"""Every storage instance bundled with pydicom and pydicom-data, real and odd (old
ultrasounds, DICOMDIR members without pixel data, RT, SR, segmentations, every codec), sent
to the node one association each with dcmtk's dcmsend. Every instance the node acknowledged
ends forwarded or quarantined, none is left half-way, every quarantine reason is one an
operator can act on (not a bare exception name), and nothing forwarded carries its source's
patient name or ID."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pydicom

from gantry_node.io.settings import load_keys
from gantry_node.node.store import Store
from tests.conftest import free_port
from tests.support.node import (
    dcmtk_env,
    dicom_destination,
    node_config,
    received_files,
    running_node,
    storescp,
    wait_for,
)

STORAGE = "1.2.840.10008.5.1.4.1.1."
BARE_EXCEPTION = re.compile(r": [A-Z]\w*(Error|Exception)$")


def identity(ds: pydicom.Dataset) -> list[bytes]:
    """The source's patient name and ID, where long enough not to occur by chance."""
    values = [str(ds.get("PatientName", "") or ""), str(ds.get("PatientID", "") or "")]
    return [v.encode() for v in values if len(v) >= 6]


def bundled_instances() -> dict[Path, tuple[str, list[bytes]]]:
    """Storage instances with file meta, one per file meta SOP Instance UID: the data set's
    SOP Instance UID and the source's identity (see `identity`)."""
    folders = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store

        folders.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    found: dict[Path, tuple[str, list[bytes]]] = {}
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(p for folder in folders for p in folder.rglob("*") if p.is_file()):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                sop_class = str(ds.file_meta.MediaStorageSOPClassUID)
                uid = str(ds.file_meta.MediaStorageSOPInstanceUID)
            except Exception:  # noqa: BLE001 -- not a Part 10 file: not something a sender sends
                continue
            if sop_class.startswith(STORAGE) and uid not in seen:
                seen.add(uid)
                found[path] = (str(ds.get("SOPInstanceUID", "") or ""), identity(ds))
    return found


def test_bundled_real_files_through_the_node(tmp_path):
    instances = bundled_instances()
    assert len(instances) > 100, "pydicom-data is part of the test extra"
    inbox = tmp_path / "in"
    inbox.mkdir()
    with storescp(tmp_path / "research") as research_port:
        port = free_port()
        # raw files kept: the original SOP Instance UID leaves the index with the raw file, and
        # this test looks each acknowledged instance up by it
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)],
                             workers={"processes": 2}, retention={"raw": "keep"})
        acknowledged = {}
        with running_node(config, port):
            for i, (path, (sop_uid, source_identity)) in enumerate(instances.items()):
                copy = inbox / f"{i:03d}.dcm"
                shutil.copy(path, copy)
                sent = subprocess.run(["dcmsend", "-v", "-aec", "GANTRY", "--decompress-never", "127.0.0.1", str(port),
                                       str(copy)], capture_output=True, text=True, env=dcmtk_env(), timeout=60)
                # dcmsend exits 0 even when no presentation context was accepted: read the status
                if "Received C-STORE Response (Success)" in sent.stdout + sent.stderr:
                    # one row per SOP Instance UID the data set carries
                    acknowledged[sop_uid] = source_identity
            store = Store(tmp_path / "data" / "gantry.db")
            missing = [uid for uid in acknowledged if store.known(uid) is None]
            assert not missing, f"acknowledged but not held: {missing}"

            def settled():
                counts = store.counts()
                busy = counts.get("received", 0) + counts.get("processing", 0) + counts.get("clean", 0)
                return not busy and counts

            counts = wait_for(settled, timeout=300, interval=0.5, what="every instance forwarded or quarantined")
            held = store.list_state("quarantined", "forward_failed", limit=10_000)
            store.close()
            files = received_files(tmp_path / "research")
    # a few files are too broken for dcmsend to send; the rest were all acknowledged
    assert len(acknowledged) >= len(instances) - 10
    assert {state for state, n in counts.items() if n} <= {"forwarded", "quarantined"}, counts
    assert counts.get("forwarded", 0) >= 40, f"over-quarantined: {counts}"
    for row in held:
        assert row.reason and not BARE_EXCEPTION.search(row.reason), row.reason
    keys = load_keys(tmp_path / "data" / "secret")
    by_clean = {keys.uid(uid): values for uid, values in acknowledged.items()}
    assert len(files) == counts["forwarded"]
    for path in files:
        blob = path.read_bytes()
        clean_uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert clean_uid in by_clean, "forwarded under the UID the secret gives"
        for value in by_clean[clean_uid]:
            assert value not in blob, f"{value!r} of the source is in {path.name}"
