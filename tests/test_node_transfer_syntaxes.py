"""Every common transfer syntax goes through the node as received, with real peers: dcmtk's
dcmsend (which proposes each file's own syntax, as a modality does) -> gantry-node -> dcmtk
storescp. Pixel data the node need not redact arrives byte for byte as sent. A syntax the
destination refuses arrives decoded to the same values (destinations[].decompress), or, when
that is not allowed, waits and fails on its own while the rest flows."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.uid import generate_uid

from gantry_node.engine.pixels.codec import decode
from tests.conftest import free_port
from tests.support.node import (
    assert_no_phi,
    dcmtk_env,
    make_ct,
    node_config,
    received_files,
    running_node,
    storescp,
    wait_for,
)
from tests.support.pixels import encode_as

UNCOMPRESSED = {uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian}
SYNTAXES = [
    uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLossless, uid.JPEGLosslessSV1,
    uid.JPEGLSLossless, uid.JPEGLSNearLossless, uid.JPEG2000Lossless, uid.JPEG2000, uid.RLELossless,
]
REFUSED_BY_STORESCP = uid.JPEGLossless  # process 14 (not SV1): not among storescp's +xa syntaxes


def write_instances(folder, tmp, syntaxes) -> dict[int, pydicom.Dataset]:
    """One CT per syntax in one series (Instance Number i), as written to `folder`."""
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    sent = {}
    for i, syntax in enumerate(syntaxes, 1):
        ds = make_ct(study, series, generate_uid(), i)
        if syntax == uid.JPEGBaseline8Bit:  # 8-bit only
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
            ds.PixelData = (np.frombuffer(ds.PixelData, "<u2") >> 4).astype(np.uint8).tobytes()
        encoded = encode_as(ds, syntax, tmp)
        assert encoded.file_meta.TransferSyntaxUID == syntax
        encoded.save_as(folder / f"{i:02d}.dcm", enforce_file_format=True)
        sent[i] = pydicom.dcmread(folder / f"{i:02d}.dcm")
    return sent


def dcmsend(port: int, folder) -> subprocess.CompletedProcess:
    """Send every file in its own transfer syntax (never decompressed by the sender)."""
    return subprocess.run(["dcmsend", "-aet", "MODALITY", "-aec", "GANTRY", "--decompress-never", "+sd",
                           "127.0.0.1", str(port), str(folder)], capture_output=True, text=True,
                          env=dcmtk_env(), timeout=120)


def audit_events(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]


def test_every_syntax_arrives_as_received_or_decoded_where_refused(tmp_path):
    sent = write_instances(tmp_path / "in", tmp_path, SYNTAXES)
    with storescp(tmp_path / "research") as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[
            {"name": "research", "ae_title": "RESEARCH", "host": "127.0.0.1", "port": research_port}])
        with running_node(config, port):
            result = dcmsend(port, tmp_path / "in")
            assert result.returncode == 0, result.stderr
            files = wait_for(lambda: len(f := received_files(tmp_path / "research")) >= len(sent) and f,
                             timeout=90, what=f"{len(sent)} instances at storescp")
        blobs = [p.read_bytes() for p in files]
    assert len(files) == len(sent)
    assert_no_phi(blobs, "received instances")
    for path in files:
        got = pydicom.dcmread(path)
        original = sent[int(got.InstanceNumber)]
        source = original.file_meta.TransferSyntaxUID
        arrived = got.file_meta.TransferSyntaxUID
        assert got.PatientIdentityRemoved == "YES"
        assert got.SOPInstanceUID != original.SOPInstanceUID
        if source == REFUSED_BY_STORESCP:
            assert arrived == uid.ExplicitVRLittleEndian, "sent decoded"
            assert np.array_equal(decode(got).frames, decode(original).frames), "same pixel values"
            assert "LossyImageCompression" not in got
        elif source in UNCOMPRESSED:
            # the node accepted whichever uncompressed syntax dcmsend offered first
            assert arrived in UNCOMPRESSED and got.PixelData == original.PixelData
        else:
            assert arrived == source, f"{source.name} kept"
            assert got.PixelData == original.PixelData, f"{source.name}: pixel data untouched"
    delivered = [e for e in audit_events(tmp_path) if e["event"] == "delivered"]
    assert len(delivered) == len(sent)
    assert [e.get("decompressed_from") for e in delivered if "decompressed_from" in e] == [REFUSED_BY_STORESCP]


def test_refused_syntax_without_decompression_fails_alone(tmp_path, run_cli):
    """decompress: never. The refused instance fails on its own, with a reason naming the
    syntax; the destination is not paused for it (a pause would be 30 s here), so the instance
    beside it is delivered at once."""
    write_instances(tmp_path / "in", tmp_path, [uid.JPEGLSLossless, uid.ExplicitVRLittleEndian])
    with storescp(tmp_path / "research", accept="+x=") as research_port:  # uncompressed only
        port = free_port()
        config = node_config(tmp_path, port, destinations=[
            {"name": "research", "ae_title": "RESEARCH", "host": "127.0.0.1", "port": research_port,
             "decompress": "never", "max_attempts": 1, "backoff_initial": 30, "backoff_max": 60}])
        with running_node(config, port):
            assert dcmsend(port, tmp_path / "in").returncode == 0
            wait_for(lambda: {"forward_failed", "forwarded"} <= {e["event"] for e in audit_events(tmp_path)},
                     timeout=20, what="one instance forward_failed and the other forwarded, without a pause")
            listed = run_cli("quarantine", "list", "--config", config, check=True)
            files = received_files(tmp_path / "research")
    assert len(files) == 1
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID in UNCOMPRESSED
    failed = [line for line in listed.stdout.splitlines() if "forward_failed" in line]
    assert len(failed) == 1 and "CT Image Storage in JPEG-LS Lossless" in failed[0]
    assert "cannot associate" not in listed.stdout


@pytest.mark.parametrize("decompress, delivered", [("never", 0), ("lossless", 1)])
def test_destination_accepting_nothing_proposed(tmp_path, run_cli, decompress, delivered):
    """Only a JPEG-LS instance waits, and storescp takes uncompressed only. With `never` no
    context is acceptable: the reason says so (not "cannot associate"); with `lossless` the
    uncompressed context proposed beside it carries the instance decoded."""
    write_instances(tmp_path / "in", tmp_path, [uid.JPEGLSLossless])
    with storescp(tmp_path / "research", accept="+x=") as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[
            {"name": "research", "ae_title": "RESEARCH", "host": "127.0.0.1", "port": research_port,
             "decompress": decompress, "max_attempts": 2, "backoff_initial": 0.2, "backoff_max": 0.5}])
        with running_node(config, port):
            assert dcmsend(port, tmp_path / "in").returncode == 0
            done = "forward_failed" if delivered == 0 else "forwarded"
            wait_for(lambda: any(e["event"] == done for e in audit_events(tmp_path)), timeout=60, what=done)
            listed = run_cli("quarantine", "list", "--config", config, check=True)
            files = received_files(tmp_path / "research")
    assert len(files) == delivered
    if delivered == 0:
        assert "accepts none of the proposed presentation contexts" in listed.stdout
        assert "JPEG-LS Lossless" in listed.stdout
    else:
        assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == uid.ExplicitVRLittleEndian
