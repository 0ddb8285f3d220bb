"""Reversibility does not depend on the original being valid. Every storage instance bundled with
pydicom, pydicom-data and deid-data that the engine accepts (real data: an LO of 122 characters
in two Philips EPIQ 5G ultrasounds, UIDs that are hashes, a private creator with VR UV, odd
lengths) is de-identified, sealed, written as the node writes it, read back as `recover` reads
it, and recovered: every original attribute that was changed comes back value for value (bytes
for bytes for binary values)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pydicom
import pytest

from gantry_node.engine.deid import DeidError, deidentify
from gantry_node.engine.encoding import encode_dataset
from gantry_node.engine.seal import make_sealer, recover
from gantry_node.io.part10 import BadInput, read_instance
from tests.support.seal import recipient
from tests.test_node_real_files import bundled_instances

deid_data = pytest.importorskip("deid_data", reason="deid-data is part of the test extra")
ULTRASOUNDS = Path(deid_data.__file__).parent / "data" / "ultrasounds"


def corpus(tmp_path: Path) -> list[Path]:
    paths = list(bundled_instances())
    paths += sorted(Path(deid_data.__file__).parent.rglob("*.dcm"))
    for archive in sorted(ULTRASOUNDS.glob("*.zip")):  # the cines ship zipped
        with zipfile.ZipFile(archive) as z:
            paths += [Path(z.extract(name, tmp_path)) for name in z.namelist() if name.endswith(".dcm")]
    return paths


def same(original, recovered, where: str) -> None:
    assert recovered.VR == original.VR, where
    if original.VR == "SQ":
        assert len(recovered.value) == len(original.value), where
        for i, (a, b) in enumerate(zip(original.value, recovered.value, strict=True)):
            assert list(b.keys()) == list(a.keys()), f"{where}[{i}]"
            for tag in a.keys():  # noqa: SIM118
                same(a[tag], b[tag], f"{where}[{i}].{tag}")
        return
    if isinstance(original.value, bytes) and len(original.value) % 2:
        # an odd-length binary value (non-conformant) is written with its pad byte, as by any writer
        assert recovered.value == original.value + b"\x00", where
        return
    assert recovered.value == original.value, where


def test_every_bundled_instance_seals_and_recovers_what_was_changed(tmp_path, policy, keys):
    broker = recipient()
    sealer = make_sealer([broker.cert])
    accepted, models = 0, set()
    for path in corpus(tmp_path):
        try:
            original = read_instance(path)
            result = deidentify(original, policy, keys)
        except (BadInput, DeidError):
            continue  # not an instance the engine accepts: quarantined before sealing
        accepted += 1
        models.add(str(original.get("ManufacturerModelName", "")))
        sealer(result.dataset, result.originals)
        written = tmp_path / "sealed.dcm"
        written.write_bytes(encode_dataset(result.dataset))
        back = recover(read_instance(written), broker.key).dataset
        assert result.originals, path.name
        for elem in result.originals:
            assert elem.tag in back, f"{path.name} {elem.tag}"
            same(elem, back[elem.tag], f"{path.name} {elem.tag}")
    assert accepted >= 100
    assert "EPIQ 5G" in models and "S2000" in models


@pytest.mark.parametrize("name", ["GREYSCALE_IMAGE.dcm", "GREYSCALE_CINE.dcm"])
def test_recover_command_reopens_the_epiq_5g_ultrasounds(tmp_path, run_cli, policy, keys, name):
    """The two Philips EPIQ 5G files whose Reason for Study is an LO of 122 characters: sealed
    by the node's stages, reopened by `gantry-node recover`, the long value whole."""
    source = ULTRASOUNDS / name
    if not source.exists():
        with zipfile.ZipFile(ULTRASOUNDS / "GREYSCALE_CINE.zip") as z:
            source = Path(z.extract(name, tmp_path))
    original = read_instance(source)
    assert original.ManufacturerModelName == "EPIQ 5G" and len(original.ReasonForStudy) > 64
    result = deidentify(original, policy, keys)
    assert "ReasonForStudy" in result.originals
    make_sealer([recipient().cert])(result.dataset, result.originals)
    sealed = tmp_path / "sealed.dcm"
    sealed.write_bytes(encode_dataset(result.dataset))
    key_path, _ = recipient().write(tmp_path / "broker")
    out = tmp_path / "out"
    proc = run_cli("recover", sealed, "--key", key_path, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr  # pydicom's validation warnings quote the value
    (written,) = [p for p in out.rglob("*.dcm")]
    back = pydicom.dcmread(written)
    assert back.ReasonForStudy == original.ReasonForStudy
    assert back.PatientID == original.PatientID and back.SOPInstanceUID == original.SOPInstanceUID
