"""Helpers for the node's tests: small valid CT instances with planted PHI, a running node,
and real peers (dcmtk storescu/storescp, Orthanc) on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from gantry_node.testing import Study as SyntheticStudy
from tests.conftest import REPO, cli_env, free_port

# PHI planted in every synthetic instance; none of it may reach a destination or a log.
PHI = {
    "PatientName": "Doe^Jane^Marie",
    "PatientID": "MRN-8675309",
    "PatientBirthDate": "19610423",
    "InstitutionName": "Saint Elsewhere General Hospital",
    "OtherPatientIDs": "ALT-5551234",
    "ReferringPhysicianName": "Kildare^James",
}
PRIVATE_CREATOR = "ACME_PHI_1"
PRIVATE_NAME = "Doe Jane Marie private copy"

PHI_STRINGS = [
    "Doe^Jane", "Jane", "Marie", "MRN-8675309", "8675309", "19610423", "Saint Elsewhere", "ALT-5551234",
    "Kildare", "private copy",
]


@dataclass
class Study:
    study_uid: str
    series_uid: str
    sop_uids: list[str]


def make_ct(study_uid: str, series_uid: str, sop_uid: str, index: int = 1, size: int = 64,
            patient: dict[str, str] | None = None) -> Dataset:
    """One small valid 12-bit CT Image Storage instance (gantry_node.testing) with these UIDs
    and the planted PHI above (and `patient`'s attributes over it)."""
    study = (SyntheticStudy.for_patient(name=PHI["PatientName"], patient_id=PHI["PatientID"],
                                        birth_date=PHI["PatientBirthDate"], sex="F")
             .on("20240115", "101500").accession("ACC12345").described("CT CHEST").with_uid(study_uid))
    study.study_id = "S1"
    series = study.series("CT").with_uid(series_uid, generate_uid(entropy_srcs=["frame-of-reference", series_uid]))
    series._instance_count = index - 1  # Instance Number and slice position follow `index`
    return (series.ct_image(rows=size, columns=size, bits=12).with_uid(sop_uid)
            .with_attributes(**{**PHI, **(patient or {})}, Manufacturer="ACME")
            .with_private(0x0029, PRIVATE_CREATOR, 0x10, "LO", PRIVATE_NAME).build())


def write_study(folder: Path, count: int, size: int = 64, patient: dict[str, str] | None = None,
                prefix: str = "img") -> Study:
    """`count` instances of one CT series in `folder` (file names carry no meaning)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    sops = []
    for i in range(count):
        sop = generate_uid()
        make_ct(study, series, sop, i + 1, size, patient).save_as(folder / f"{prefix}{i:05d}.dcm",
                                                                   enforce_file_format=True)
        sops.append(sop)
    return Study(study, series, sops)


def dcmtk_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def storescu(port: int, files: list[Path] | Path, calling: str = "MODALITY", called: str = "GANTRY",
             timeout: float = 120, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Send with dcmtk storescu; returns the finished process (its stderr names each status)."""
    paths = [files] if isinstance(files, Path) else files
    args = ["storescu", "-aet", calling, "-aec", called, *extra]
    if isinstance(files, Path) and files.is_dir():
        args += ["+sd", "+r"]
    args += ["127.0.0.1", str(port), *map(str, paths)]
    return subprocess.run(args, capture_output=True, text=True, env=dcmtk_env(), timeout=timeout)


@contextmanager
def storescp(folder: Path, ae_title: str = "RESEARCH", port: int | None = None,
             accept: str = "+xa", extra: tuple[str, ...] = ()) -> Iterator[int]:
    """A dcmtk storescp writing what it receives into `folder`; yields its port. `accept` is
    its transfer syntax option: +xa every syntax it supports, +x= uncompressed only."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen(
        ["storescp", "-aet", ae_title, "-od", str(folder), accept, *extra, str(port)],
        env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, proc)
        yield port
    finally:
        stop(proc)


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def node_config(tmp: Path, port: int, destinations: list[dict] | None = None, **sections) -> Path:
    """A node.yaml for a test node on 127.0.0.1 with its data under tmp/data."""
    doc = {
        "node": {"ae_title": "GANTRY", "bind": "127.0.0.1", "port": port, **sections.pop("node", {})},
        "data_dir": str(tmp / "data"),
        "secret_file": str(tmp / "data" / "secret"),
        "logging": {"file": str(tmp / "data" / "audit.log"), "stdout": True},
        "workers": {"processes": 1},
        **sections,
    }
    if destinations is not None:
        doc["destinations"] = destinations
    path = tmp / "node.yaml"
    path.write_text(yaml.safe_dump(doc))
    (tmp / "data").mkdir(exist_ok=True, mode=0o700)
    secret = tmp / "data" / "secret"
    if not secret.exists():
        secret.write_bytes(b"node-test-secret-0123456789abcdef")
        secret.chmod(0o600)
    return path


@contextmanager
def running_node(config: Path, port: int, log: Path | None = None) -> Iterator[subprocess.Popen]:
    """`gantry-node serve --config CONFIG` as a child process, stopped (SIGTERM) afterwards."""
    out = open(log or config.with_suffix(".out"), "ab")  # noqa: SIM115 -- closed in finally
    proc = subprocess.Popen([sys.executable, "-m", "gantry_node", "serve", "--config", str(config)],
                            env=cli_env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_port(port, proc, timeout=30)
        yield proc
    finally:
        stop(proc)
        out.close()


def wait_for(predicate, timeout: float = 60, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def received_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def assert_no_phi(blobs: list[bytes], where: str) -> None:
    for blob in blobs:
        for needle in PHI_STRINGS:
            assert needle.encode() not in blob, f"PHI {needle!r} found in {where}"


def orthanc_available() -> bool:
    return shutil.which("Orthanc") is not None


@contextmanager
def orthanc(tmp: Path, ae_title: str = "ORTHANC", modalities: dict[str, list | dict] | None = None,
            name: str = "orthanc", extra: dict | None = None) -> Iterator[tuple[int, int]]:
    """Our own Orthanc on loopback: yields (dicom_port, http_port). `modalities` are the peers
    it may send to ({"gantry": ["GANTRY", "127.0.0.1", port]}); `extra` more configuration
    (e.g. the DicomTls* settings)."""
    import json

    dicom_port, http_port = free_port(), free_port()
    root = tmp / name
    root.mkdir(parents=True, exist_ok=True)
    config = root / "orthanc.json"
    config.write_text(json.dumps({
        "Name": "research", "DicomAet": ae_title, "DicomPort": dicom_port, "HttpPort": http_port,
        "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomServerEnabled": True,
        "HttpServerEnabled": True, "Plugins": [], "DicomCheckCalledAet": False,
        "DicomModalities": modalities or {}, **(extra or {}),
    }))
    log = open(root / "orthanc.log", "wb")  # noqa: SIM115 -- closed in finally
    proc = subprocess.Popen(["Orthanc", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(http_port, proc)
        wait_port(dicom_port, proc)
        yield dicom_port, http_port
    finally:
        stop(proc)
        log.close()


def orthanc_post(http_port: int, path: str, body: bytes) -> bytes:
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{http_port}{path}", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=120) as r:
        return r.read()


def orthanc_get(http_port: int, path: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=10) as r:
        return r.read()


def acknowledged(storescu_output: str) -> set[str]:
    """File names storescu got a Success (or warning) response for, from its -v output."""
    done, current = set(), None
    for line in storescu_output.splitlines():
        if "Sending file:" in line:
            current = Path(line.split("Sending file:", 1)[1].strip()).name
        elif "Received Store Response" in line and current:
            if "(Success)" in line or "Warning" in line:
                done.add(current)
            current = None
    return done


def expected_clean_uids(secret_file: Path, original_uids) -> set[str]:
    """The pseudonymous SOP Instance UIDs the node must produce (deterministic from the secret)."""
    from gantry_node.io.settings import load_keys

    keys = load_keys(secret_file)
    return {keys.uid(u) for u in original_uids}


def dicom_destination(name: str, port: int, **extra) -> dict:
    return {"name": name, "ae_title": "RESEARCH", "host": "127.0.0.1", "port": port, **extra}


def read_uids(files: list[Path]) -> list[str]:
    import pydicom

    return [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files]


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """`folder` (created) as a tmpfs of `size` (e.g. "1m"), 0700, for disk-full tests; the test
    is skipped where mounting is not allowed (not root)."""
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
