"""`gantry-node deid IN OUT`: a folder with good, bad and foreign files."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from gantry_node.io.part10 import write_instance
from tests.support.datasets import SR, minimal

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


def _corrupt_inputs(folder: Path) -> dict[str, Path]:
    raw = CT_SMALL.read_bytes()
    rows = raw.find(bytes.fromhex("28001000") + b"US")
    files = {
        "truncated": raw[: len(raw) - 5000],
        "not_dicom": b"just some notes, not an image\n" * 10,
        "bad_vr": raw[: rows + 4] + b"ZZ" + raw[rows + 6 :],
        "odd_length": raw[: rows + 6] + struct.pack("<H", 3) + raw[rows + 8 : rows + 10] + b"\x00" + raw[rows + 10 :],
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.dcm"
        paths[name].write_bytes(data)
    return paths


def test_folder_with_good_and_bad_files(tmp_path, run_cli, secret_file):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "nested").mkdir(parents=True)
    shutil.copy(CT_SMALL, src / "nested" / "DOE_JANE_ct.dcm")
    write_instance(minimal(SR, Modality="SR"), src / "plain.dcm")
    bad = _corrupt_inputs(src)
    proc = run_cli("deid", src, out, "--secret-file", secret_file, "--no-progress")
    assert proc.returncode == 1, proc.stderr
    text = proc.stdout
    assert "6 files: 2 de-identified and written, 0 held back, 3 unreadable, 1 not DICOM" in text
    assert f"skipped (not DICOM): {bad['not_dicom']}" in text
    assert f"{bad['truncated']}: (7FE0,0010): value is 27906 of 32768 bytes (file truncated)" in text
    assert f"{bad['bad_vr']}: (0028,0010): invalid VR 'ZZ'" in text
    assert f"{bad['odd_length']}: (0028,0010): US value of 3 bytes is not a multiple of 2" in text
    assert "Traceback" not in proc.stderr
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(written) == 2, written  # nothing else, no temp files, no half-written files
    for path in written:
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert path.name == f"{ds.SOPInstanceUID}.dcm"
        assert path.parent.name == ds.SeriesInstanceUID and path.parent.parent.name == ds.StudyInstanceUID
    assert not any("DOE" in str(p) for p in written)


def test_same_secret_same_output_bytes(tmp_path, run_cli, secret_file):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(CT_SMALL, src)
    for name in ("a", "b"):
        run_cli("deid", src, tmp_path / name, "--secret-file", secret_file, "--no-progress", check=True)
    a = sorted((tmp_path / "a").rglob("*.dcm"))
    b = sorted((tmp_path / "b").rglob("*.dcm"))
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    assert a[0].read_bytes() == b[0].read_bytes()


def test_missing_secret_is_an_error(tmp_path, run_cli):
    (tmp_path / "in").mkdir()
    proc = run_cli("deid", tmp_path / "in", tmp_path / "out")
    assert proc.returncode == 2
    assert "no site secret" in proc.stderr and "secret init" in proc.stderr
    proc = run_cli("deid", tmp_path / "in", tmp_path / "out", "--secret-file", tmp_path / "nope")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_bad_policy_names_the_key(tmp_path, run_cli, secret_file):
    (tmp_path / "in").mkdir()
    policy = tmp_path / "p.yaml"
    policy.write_text("options:\n  retain_uid: true\n")
    proc = run_cli("deid", tmp_path / "in", tmp_path / "out", "--secret-file", secret_file, "--policy", policy)
    assert proc.returncode == 2
    assert "options.retain_uid: unknown option" in proc.stderr


def test_secret_init(tmp_path, run_cli):
    path = tmp_path / "s" / "secret"
    run_cli("secret", "init", path, check=True)
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_bytes().strip()) == 64
    again = run_cli("secret", "init", path)
    assert again.returncode == 2 and "refusing" in again.stderr


def test_output_inside_input_is_refused(tmp_path, run_cli, secret_file):
    (tmp_path / "in").mkdir()
    proc = run_cli("deid", tmp_path / "in", tmp_path / "in" / "out", "--secret-file", secret_file)
    assert proc.returncode == 2 and "must not be inside the input" in proc.stderr


def test_audit_is_a_dry_run_without_values(tmp_path, run_cli, secret_file):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(CT_SMALL, src / "ct.dcm")
    csv = tmp_path / "findings.csv"
    proc = run_cli("audit", src, "--secret-file", secret_file, "--csv", csv, check=True)
    assert "PatientName" in proc.stdout and "InstitutionName" in proc.stdout
    assert "CompressedSamples" not in proc.stdout  # CT_small's patient name
    assert "CompressedSamples" not in csv.read_text()
    assert sorted(p.name for p in src.iterdir()) == ["ct.dcm"]
    revealed = run_cli("audit", src / "ct.dcm", "--secret-file", secret_file, "--reveal", check=True)
    assert "CompressedSamples" in revealed.stdout


def test_deid_seals_to_a_certificate_and_recover_reverses_it(tmp_path, run_cli, secret_file):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(CT_SMALL, src / "ct.dcm")
    run_cli("keys", "init", tmp_path / "broker", check=True)
    cert, key = tmp_path / "broker" / "honest-broker-cert.pem", tmp_path / "broker" / "honest-broker-key.pem"
    run_cli("deid", src, tmp_path / "out", "--secret-file", secret_file, "--certificate", cert,
            "--algorithm", "aes128", "--no-progress", check=True)
    (out,) = list((tmp_path / "out").rglob("*.dcm"))
    assert "EncryptedAttributesSequence" in pydicom.dcmread(out)
    shown = run_cli("recover", out, "--key", key, "--show", check=True)
    assert "CompressedSamples^CT1" in shown.stdout
    bad = run_cli("deid", src, tmp_path / "out2", "--secret-file", secret_file, "--certificate", key)
    assert bad.returncode == 2 and "--certificate" in bad.stderr and "Traceback" not in bad.stderr
