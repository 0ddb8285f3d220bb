#!/usr/bin/env python3
"""Hostile input against a real gantry-node: mutated data sets over real associations, raw PDU
mutations, bare and slow connections, while a canary sender checks the node keeps serving.

    python scripts/fuzz_scp.py [-n 300] [--seed 1] [--keep DIR]

Starts its own node (a private data folder, free ports on 127.0.0.1) with a dcmtk storescp as
its destination, runs N cases drawn from these kinds, and after every tenth case sends one
ordinary CT (the canary) that must be acknowledged with Success:

- dataset: a synthetic CT whose encoded data set has bytes flipped, cut short, lengths changed
  or elements spliced in, sent with pynetdicom's C-STORE of the file's own bytes;
- pdu: an A-ASSOCIATE-RQ (or a P-DATA after one) with bytes flipped, lengths lying, types
  changed or cut short, on a raw socket; also plain garbage and a release before association;
- slow: a connection that sends a few bytes a second for a while;
- idle: bare connections, more than node.max_associations at once, held open while the
  canary sends.

Prints: cases per kind, crashes (the node process ended), hangs (a canary not answered within
its timeout), acknowledged-but-lost (a Success whose instance the index does not hold),
stuck (instances still received/processing/clean once the node is left alone), and the peak
RSS of each node process before and after. Exit status 0 only if crashes, hangs, lost and
stuck are all 0. Only processes this script started are stopped, by PID.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pynetdicom import AE, _config  # noqa: E402
from pynetdicom.sop_class import CTImageStorage  # noqa: E402

from gantry_node.testing import Study  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
CANARY_TIMEOUT = 30.0
SETTLE_TIMEOUT = 120.0
KINDS = ("dataset", "pdu", "slow", "idle")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.pid} ended before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


# -- what is sent ----------------------------------------------------------------------------

def seed_file(rng: random.Random, n: int) -> tuple[bytes, str]:
    """A small synthetic CT, Part 10 bytes, and its SOP Instance UID."""
    study = Study.for_patient(f"FUZZ^CASE{n}", f"FZ{n:06d}", "19700101", seed=f"fuzz-{rng.random()}")
    ds = study.series("CT").ct_image(rows=32, columns=32).with_all_phi().build()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), str(ds.SOPInstanceUID)


def data_set_offset(part10: bytes) -> int:
    """Where the data set starts: after the preamble, DICM and the file meta group."""
    (group_length,) = struct.unpack_from("<L", part10, 128 + 4 + 8)
    return 128 + 4 + 12 + group_length


def mutate_data_set(rng: random.Random, part10: bytes) -> bytes:
    start = data_set_offset(part10)
    body = bytearray(part10[start:])
    how = rng.choice(("flip", "flip", "truncate", "length", "splice", "zero-run"))
    if how == "flip":
        for _ in range(rng.randrange(1, 12)):
            at = rng.randrange(0, min(len(body), 4096))  # the header, mostly; pixels flip harmlessly
            body[at] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        del body[rng.randrange(0, len(body)):]
    elif how == "length":
        at = rng.randrange(0, min(len(body), 2048) - 4)
        body[at:at + 4] = struct.pack("<L", rng.choice((0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(2**32))))
    elif how == "splice":
        tag = rng.choice((0x10080080, 0x2020000E, 0x00091010, 0x7FE00010, 0xFFFEE000, 0x00080018))
        vr = rng.choice((b"LO", b"UI", b"UN", b"SQ", b"OB", b"ZZ"))
        value = rng.choice((b"ST ELSEWHERE", b"1.2.3.4.5", b"\x00" * 7, rng.randbytes(rng.randrange(0, 64))))
        element = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack("<H", len(value) & 0xFFFF) + value
        at = rng.randrange(0, min(len(body), 2048))
        body[at:at] = element
    else:
        at = rng.randrange(0, min(len(body), 2048))
        body[at:at + rng.randrange(2, 64)] = b"\x00" * 8
    return part10[:start] + bytes(body)


def associate_rq(called: bytes = b"GANTRY", calling: bytes = b"FUZZER") -> bytes:
    def item(kind: int, payload: bytes) -> bytes:
        return struct.pack(">BxH", kind, len(payload)) + payload

    app = item(0x10, b"1.2.840.10008.3.1.1.1")
    pc = item(0x20, struct.pack(">BBBB", 1, 0, 0, 0) + item(0x30, CT.encode()) + item(0x40, EXPLICIT.encode()))
    user = item(0x50, item(0x51, struct.pack(">L", 16384)))
    body = struct.pack(">HH", 1, 0) + called.ljust(16) + calling.ljust(16) + b"\x00" * 32 + app + pc + user
    return struct.pack(">BxL", 0x01, len(body)) + body


def pdu_case(rng: random.Random) -> tuple[str, list[bytes]]:
    """(description, chunks to send one after another) for one raw-socket case."""
    rq = bytearray(associate_rq())
    how = rng.choice(("flip", "length", "type", "truncate", "garbage", "release-first", "pdata-after",
                      "huge-pdv", "abort"))
    if how == "flip":
        for _ in range(rng.randrange(1, 8)):
            rq[rng.randrange(len(rq))] ^= 1 << rng.randrange(8)
        return how, [bytes(rq)]
    if how == "length":
        rq[2:6] = struct.pack(">L", rng.choice((0, 1, len(rq) * 4, 0xFFFFFFFF)))
        return how, [bytes(rq)]
    if how == "type":
        rq[0] = rng.choice((0x00, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xFF))
        return how, [bytes(rq)]
    if how == "truncate":
        return how, [bytes(rq[: rng.randrange(1, len(rq))])]
    if how == "garbage":
        return how, [rng.randbytes(rng.randrange(1, 2048))]
    if how == "release-first":
        return how, [struct.pack(">BxL", 0x05, 4) + b"\x00" * 4]
    if how == "abort":
        return how, [bytes(rq), struct.pack(">BxLBBBB", 0x07, 4, 0, 0, 0, 0)]
    if how == "huge-pdv":
        pdata = struct.pack(">BxL", 0x04, 0xFFFFFFF0) + struct.pack(">LBB", 0xFFFFFFEC, 1, 0x03)
        return how, [bytes(rq), pdata]
    pdv = rng.randbytes(rng.randrange(0, 512))
    pdata = struct.pack(">BxL", 0x04, len(pdv) + 6) + struct.pack(">LBB", len(pdv) + 2, 1, rng.choice((0, 1, 2, 3)))
    return how, [bytes(rq), pdata + pdv]


def raw_send(port: int, chunks: list[bytes], read_timeout: float = 0.5) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(read_timeout)
        for chunk in chunks:
            try:
                s.sendall(chunk)
                s.recv(65536)
            except OSError:
                return


def slow_sender(port: int, seconds: float, stop: threading.Event) -> None:
    data = associate_rq()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            end = time.monotonic() + seconds
            i = 0
            while time.monotonic() < end and not stop.is_set() and i < len(data):
                s.sendall(data[i:i + 1])
                i += 1
                stop.wait(1.0)
    except OSError:
        pass


def sent_uid(part10: bytes) -> str | None:
    """The Affected SOP Instance UID pynetdicom sends for these file bytes: the data set's own
    SOP Instance UID (it reads the file whole), which a mutation may have changed."""
    import pydicom

    try:
        return str(pydicom.dcmread(io.BytesIO(part10)).SOPInstanceUID)
    except Exception:  # noqa: BLE001 -- pynetdicom cannot send it either
        return None


def c_store(port: int, part10: bytes, tmp: Path, timeout: float = CANARY_TIMEOUT, raw: bool = False) -> int | None:
    """Send the file with one pynetdicom association; the status, or None when the node did not
    answer (association refused or aborted, or no response in time). `raw`: the data set's
    bytes as they are in the file, under the file meta's UIDs (pynetdicom's chunked send),
    so a data set pynetdicom itself could not parse reaches the node; otherwise pynetdicom
    reads the file and sends the data set it decoded."""
    path = tmp / f"send-{threading.get_ident()}-{time.monotonic_ns()}.dcm"
    path.write_bytes(part10)
    ae = AE(ae_title="FUZZER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(CTImageStorage, EXPLICIT)
    _config.STORE_SEND_CHUNKED_DATASET = raw
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="GANTRY")
        if not assoc.is_established:
            return None
        try:
            status = assoc.send_c_store(path)
        except Exception:  # noqa: BLE001 -- a file pynetdicom cannot even send: not a node failure
            assoc.abort()
            return -1
        assoc.release()
        return int(status.Status) if "Status" in status else None
    finally:
        path.unlink(missing_ok=True)


# -- the node --------------------------------------------------------------------------------

def peak_rss(root_pid: int) -> dict[str, int]:
    """VmHWM (kB) of the node's processes, by command name."""
    out: dict[str, int] = {}
    pids = [root_pid]
    try:
        children = Path(f"/proc/{root_pid}/task/{root_pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")), 0)
        key = name if name not in out else f"{name}-{pid}"
        out[key] = hwm
    return out


def start_node(work: Path, port: int, research_port: int, log) -> subprocess.Popen:
    config = {
        "node": {"ae_title": "GANTRY", "bind": "127.0.0.1", "port": port, "max_associations": 4,
                 "network_timeout": 10},
        "data_dir": str(work / "data"),
        "secret_file": str(work / "secret"),
        "logging": {"file": str(work / "data" / "audit.log"), "stdout": True},
        "workers": {"processes": 1},
        "retention": {"raw": "keep"},
        "destinations": [{"name": "research", "type": "dicom", "host": "127.0.0.1", "port": research_port,
                          "ae_title": "RESEARCH"}],
    }
    (work / "data").mkdir(mode=0o700, exist_ok=True)
    secret = work / "secret"
    if not secret.exists():
        secret.write_bytes(os.urandom(32))
        secret.chmod(0o600)
    path = work / "node.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "gantry_node", "serve", "--config", str(path)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    wait_port(port, proc)
    return proc


def index_rows(work: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(f"file:{work / 'data' / 'gantry.db'}?mode=ro", uri=True, timeout=10)
    try:
        return [(r[0], r[1]) for r in db.execute("SELECT source_uid, state FROM instances")]
    finally:
        db.close()


def describe_stuck(work: Path, uids: list[str]) -> list[str]:
    """Index id, state, stage and reason of each stuck instance, and its deliveries (state,
    attempts, last error, seconds to the next attempt): what an operator's `quarantine show` says."""
    db = sqlite3.connect(f"file:{work / 'data' / 'gantry.db'}?mode=ro", uri=True, timeout=10)
    out = []
    try:
        for uid in uids:
            row = db.execute("SELECT id, state, stage, reason FROM instances WHERE source_uid = ?", [uid]).fetchone()
            if row is None:
                continue
            out.append(f"  stuck: instance {row[0]} {row[1]} (stage {row[2]}, reason {row[3]})")
            for d in db.execute("SELECT destination, state, attempts, last_error, next_attempt_at FROM deliveries "
                                "WHERE instance_id = ?", [row[0]]):
                wait = f"{d[4] - time.time():.0f} s" if d[4] else "-"
                out.append(f"    delivery {d[0]}: {d[1]}, {d[2]} attempts, next in {wait}, last error {d[3]}")
    finally:
        db.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="number of cases")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep the node's data and logs in DIR")
    parser.add_argument("--progress", type=int, default=0, metavar="K", help="print running counts every K cases")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="gantry-fuzz-"))
    log = open(work / "node.out", "ab")  # noqa: SIM115 -- closed at the end
    research = work / "research"
    research.mkdir()
    research_port, port = free_port(), free_port()
    env = {**os.environ, "TCP_NODELAY": "1"}
    scp = subprocess.Popen(["storescp", "-aet", "RESEARCH", "-od", str(research), "+xa", str(research_port)],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = None
    kinds: Counter[str] = Counter()
    how: Counter[str] = Counter()
    crashes = hangs = 0
    acknowledged: set[str] = set()
    answered: Counter[str] = Counter()
    try:
        wait_port(research_port, scp)
        node = start_node(work, port, research_port, log)
        rss_before = peak_rss(node.pid)
        for case in range(args.n):
            kind = rng.choices(KINDS, weights=(60, 30, 5, 5))[0]
            kinds[kind] += 1
            slow_stop = threading.Event()
            holders: list[socket.socket] = []
            threads: list[threading.Thread] = []
            if kind == "dataset":
                part10, uid = seed_file(rng, case)
                mutated = mutate_data_set(rng, part10)
                raw = rng.random() < 0.5  # the file's bytes as they are, or as pynetdicom reads them
                if not raw:
                    uid = sent_uid(mutated) or uid
                status = c_store(port, mutated, work, raw=raw)
                label = "no answer" if status is None else "unsendable" if status < 0 else f"0x{status:04X}"
                answered[label] += 1
                if status is not None and status >= 0 and (status == 0 or status >> 12 == 0xB):
                    acknowledged.add(uid)
            elif kind == "pdu":
                what, chunks = pdu_case(rng)
                how[what] += 1
                raw_send(port, chunks)
            elif kind == "slow":
                threads = [threading.Thread(target=slow_sender, args=(port, 8.0, slow_stop), daemon=True)
                           for _ in range(6)]
            else:
                for _ in range(10):
                    try:
                        holders.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                    except OSError:
                        break
            for t in threads:
                t.start()
            if kind in ("slow", "idle") or case % 10 == 9:
                time.sleep(0.5 if kind in ("slow", "idle") else 0)
                part10, uid = seed_file(rng, 10**6 + case)
                status = c_store(port, part10, work)
                if status == 0:
                    acknowledged.add(uid)
                else:
                    hangs += 1
                    print(f"case {case} ({kind}): the canary got {status!r}", flush=True)
            slow_stop.set()
            for s in holders:
                s.close()
            for t in threads:
                t.join(timeout=10)
            if args.progress and (case + 1) % args.progress == 0:
                print(f"{case + 1} cases: crashes {crashes}, hangs {hangs}, acknowledged {len(acknowledged)}",
                      flush=True)
            if node.poll() is not None:
                crashes += 1
                print(f"case {case} ({kind}): the node ended with {node.returncode}; restarting", flush=True)
                node = start_node(work, port, research_port, log)
        # left alone, every acknowledged instance must settle
        end = time.monotonic() + SETTLE_TIMEOUT
        while True:
            rows = index_rows(work)
            stuck = [uid for uid, state in rows if state in ("received", "processing", "clean")]
            if not stuck or time.monotonic() > end:
                break
            time.sleep(1)
        held = {uid for uid, _ in rows}
        lost = acknowledged - held
        rss_after = peak_rss(node.pid)
        states = Counter(state for _, state in rows)
    finally:
        for proc in (node, scp):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        log.close()
    print(f"cases: {args.n} ({', '.join(f'{k} {kinds[k]}' for k in KINDS)}); pdu kinds: {dict(how)}")
    print(f"dataset answers: {dict(answered)}")
    print(f"acknowledged {len(acknowledged)}; index states {dict(states)}; "
          f"received by the destination {len(list(research.iterdir()))}")
    print(f"crashes {crashes}, hangs {hangs}, acknowledged-but-lost {len(lost)}, stuck {len(stuck)}")
    for uid in sorted(lost)[:5]:  # synthetic UIDs, no PHI: to find the case again
        print(f"  lost: {uid}")
    for uid in sorted(held - acknowledged)[:5]:
        print(f"  held but not acknowledged: {uid!r}")
    for line in describe_stuck(work, stuck[:5]):
        print(line)
    print("peak RSS (MB) before -> after: " + ", ".join(
        f"{name} {rss_before.get(name, 0) / 1024:.0f} -> {kb / 1024:.0f}" for name, kb in sorted(rss_after.items())))
    failed = not crashes == hangs == len(lost) == len(stuck) == 0
    if args.keep:
        shutil.copytree(work, args.keep, dirs_exist_ok=True)
        print(f"kept in {args.keep}")
    if failed:
        print(f"the node's data and log are left in {work} for a look")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
