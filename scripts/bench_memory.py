#!/usr/bin/env python3
"""Peak memory of each process of a real node for large instances.

    python scripts/bench_memory.py [--mib 1024] [--parallel-mib 512] [--parallel 4]

Builds a multi-frame CT of --mib MiB (frames of 512x512 16-bit, written a frame at a time: the
instance is never in this process's memory), starts a real node (`python -m gantry_node
serve`, two workers) forwarding to dcmtk storescp, sends it with dcmtk storescu and waits
until storescp holds the clean copy. Then the same with --parallel instances of
--parallel-mib MiB sent by as many storescu at once. For each case prints the peak resident
set (VmHWM, /proc/PID/status) of the node's main process, its receiver and each worker, and
how much it grew from the idle node's, also as a multiple of the instance size.

tests/test_node_memory.py runs `measure` with a smaller instance.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
FRAME = 512 * 512 * 2


def write_multiframe(path: Path, mib: int, patient: str = "Bench^Memory") -> int:
    """A CT of `mib` MiB of pixel data (512x512 16-bit frames); returns the file's size."""
    frames = max(1, mib * MIB // FRAME)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = patient, "MEM0001", "19700101"
    ds.StudyDate = ds.ContentDate = "20240101"
    ds.AccessionNumber, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "A0001", "CT", 1, 1
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    head = BytesIO()
    ds.save_as(head, enforce_file_format=True)
    base = (np.arange(512 * 512, dtype=np.uint32) * 7 % 4000).astype(np.uint16).reshape(512, 512)
    with open(path, "wb") as f:
        f.write(head.getvalue())
        f.write(struct.pack("<HH2s2xL", 0x7FE0, 0x0010, b"OW", frames * FRAME))
        for i in range(frames):
            f.write(((base + i) % 4096).astype(np.uint16).tobytes())
    return path.stat().st_size


def vm_hwm(pid: int) -> int:
    """Peak resident set of a process, in bytes (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def node_processes(main_pid: int) -> dict[str, int]:
    """{"main": pid, "receiver": pid, "worker 1": pid, ...} of a running node."""
    found = {"main": main_pid}
    children: set[int] = set()
    for task in Path(f"/proc/{main_pid}/task").iterdir():
        try:
            children |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            continue
    workers = 0
    for pid in sorted(children):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if comm == "gantry-receiver":
            found["receiver"] = pid
        elif b"resource_tracker" not in cmdline and b"spawn_main" in cmdline:
            workers += 1
            found[f"worker {workers}"] = pid
    return found


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Peak:
    process: str
    idle: int  # VmHWM of the idle node, bytes
    peak: int  # VmHWM after the instances went through, bytes

    @property
    def growth(self) -> int:
        return self.peak - self.idle


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    env["PYTHONPATH"] = str(REPO) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before listening on port {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(work: Path, files: list[Path], timeout: float = 600, workers: int = 2) -> list[Peak]:
    """Send `files` (each with its own storescu, all at once) through a fresh node to
    storescp; the peak RSS of each node process, idle and after all arrived."""
    sizes = [f.stat().st_size for f in files]
    out = work / "research"
    out.mkdir(parents=True)
    data = work / "data"
    data.mkdir(mode=0o700)
    secret = data / "secret"
    secret.write_bytes(b"bench-memory-secret-0123456789abcdef")
    secret.chmod(0o600)
    port, research = _free_port(), _free_port()
    config = work / "node.yaml"
    config.write_text(yaml.safe_dump({
        "node": {"ae_title": "GANTRY", "bind": "127.0.0.1", "port": port},
        "data_dir": str(data), "secret_file": str(secret),
        "logging": {"file": str(data / "audit.log"), "stdout": False},
        "workers": {"processes": workers},
        "destinations": [{"name": "research", "ae_title": "RESEARCH", "host": "127.0.0.1", "port": research}],
    }))
    scp = subprocess.Popen(["storescp", "-aet", "RESEARCH", "-od", str(out), "+xa", str(research)], env=_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = open(work / "node.out", "wb")  # noqa: SIM115 -- closed below
    node = subprocess.Popen([sys.executable, "-m", "gantry_node", "serve", "--config", str(config)], env=_env(),
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        _wait_port(research, scp)
        _wait_port(port, node)
        deadline = time.monotonic() + 60
        while len([k for k in node_processes(node.pid) if k.startswith("worker")]) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the node's workers did not start")
            time.sleep(0.2)
        time.sleep(1.0)  # workers import the engine as they start
        pids = node_processes(node.pid)
        idle = {name: vm_hwm(pid) for name, pid in pids.items()}
        senders = [subprocess.Popen(["storescu", "-aet", "MODALITY", "-aec", "GANTRY", "127.0.0.1", str(port),
                                     str(f)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                   for f in files]
        for sender in senders:
            _, err = sender.communicate(timeout=timeout)
            if sender.returncode != 0:
                raise RuntimeError(f"storescu failed: {err.decode(errors='replace')[-400:]}")
        deadline = time.monotonic() + timeout
        while True:
            arrived = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
            if len(arrived) >= len(files) and all(p.stat().st_size >= min(sizes) - MIB for p in arrived):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(arrived)} of {len(files)} clean instances arrived in time; "
                                   f"see {work / 'node.out'} and {data / 'audit.log'}")
            time.sleep(0.2)
        time.sleep(1.0)  # the forwarder records its delivery
        return [Peak(name, idle[name], vm_hwm(pid)) for name, pid in pids.items()]
    finally:
        _stop(node)
        log.close()
        _stop(scp)


def report(title: str, instance: int, peaks: list[Peak]) -> None:
    print(f"{title} (instance {instance / MIB:.0f} MiB)")
    for p in peaks:
        print(f"  {p.process:10s} peak {p.peak / MIB:7.0f} MiB   idle {p.idle / MIB:5.0f} MiB   "
              f"grew {p.growth / MIB:6.0f} MiB = {p.growth / instance:4.2f} x instance")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="size of the single instance (default 1024)")
    parser.add_argument("--parallel-mib", type=int, default=512, help="size of each parallel one (default 512)")
    parser.add_argument("--parallel", type=int, default=4, help="instances sent at once (default 4; 0: skip)")
    args = parser.parse_args()
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found: install dcmtk")
    work = Path(tempfile.mkdtemp(prefix="gantry-bench-memory-"))
    try:
        single = work / "single.dcm"
        size = write_multiframe(single, args.mib)
        report(f"one instance of {args.mib} MiB", size, measure(work / "one", [single]))
        single.unlink()
        if args.parallel:
            files = [work / f"parallel-{i}.dcm" for i in range(args.parallel)]
            sizes = [write_multiframe(f, args.parallel_mib, patient=f"Bench^Memory{i}") for i, f in enumerate(files)]
            report(f"{args.parallel} instances of {args.parallel_mib} MiB at once", max(sizes),
                   measure(work / "parallel", files))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
