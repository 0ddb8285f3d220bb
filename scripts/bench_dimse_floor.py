#!/usr/bin/env python3
"""What the DICOM network libraries alone cost on this machine, next to dcmtk, in one run.

    python scripts/bench_dimse_floor.py [-n 600] [--size 512] [--rounds 3]

The node's throughput targets (ingest >= 150/s, end-to-end >= 100/s on 2 cores) are bounded by
the DIMSE layer before any de-identification happens. This measures that bound, each case
against dcmtk in the same invocation, over one association with TCP_NODELAY everywhere:

receiving (dcmtk storescu sends the corpus):
  dcmtk storescp                     the baseline
  pynetdicom SCP, handler does nothing   the floor of any pynetdicom receiver
  gantry-node's SCP alone            the durable receiver (inbox write + fsync + SQLite FULL
                                     commit + audit), with nothing else running
sending (to dcmtk storescp):
  dcmtk dcmsend                      the baseline
  gantry-node's SCU                  pynetdicom, the forwarder's DicomPeer

Rates are instances/s; CPU is milliseconds per instance of the process doing the DICOM work
(for the SCPs: the receiving process, not storescu; for the senders: the sending process).
Rounds alternate the cases; the median of the rounds is printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_node import Storescp, env, free_port, make_corpus, wait_count  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pynetdicom import AE, AllStoragePresentationContexts, evt  # noqa: E402

from gantry_node.node.audit_log import Audit  # noqa: E402
from gantry_node.node.config import Destination, NodeSettings  # noqa: E402
from gantry_node.node.network import scp  # noqa: E402
from gantry_node.node.network.scu import DicomPeer  # noqa: E402
from gantry_node.node.network.tcp import nodelay_handlers  # noqa: E402
from gantry_node.node.store import Store  # noqa: E402
from gantry_node.node.store.inbox import Inbox  # noqa: E402


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send_with_storescu(port: int, files: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(["storescu", "-aec", "GANTRY", "127.0.0.1", str(port), *files], env=env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t


def recv_dcmtk(work: Path, files: list[str]) -> tuple[float, float]:
    port = free_port()
    scp_ = Storescp(work / "dcmtk-in", port)
    try:
        c0 = proc_cpu(scp_.proc.pid)
        elapsed = send_with_storescu(port, files)
        cpu = proc_cpu(scp_.proc.pid) - c0
    finally:
        scp_.stop()
    return elapsed, cpu


def recv_in_process(start) -> tuple[float, float]:
    """(seconds, CPU seconds) for storescu to send the files to an SCP running in this process."""
    port = free_port()
    server, files = start(port)
    try:
        c0 = time.process_time()
        elapsed = send_with_storescu(port, files)
        cpu = time.process_time() - c0
    finally:
        server.shutdown()
    return elapsed, cpu


def bare_pynetdicom(files: list[str]):
    def start(port: int):
        ae = AE(ae_title="GANTRY")
        ae.maximum_pdu_size = NodeSettings().max_pdu
        ae.supported_contexts = AllStoragePresentationContexts
        handlers = [(evt.EVT_C_STORE, lambda event: 0x0000), *nodelay_handlers(True)]
        return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers), files
    return start


def gantry_receiver(work: Path, files: list[str]):
    def start(port: int):
        data = work / "receiver"
        shutil.rmtree(data, ignore_errors=True)
        (data / "inbox").mkdir(parents=True)
        store = Store(data / "index.sqlite")
        audit = Audit(store, data / "audit.log", stdout=False)
        settings = NodeSettings(bind="127.0.0.1", port=port)
        return scp.start_scp(settings, Inbox(data / "inbox"), store, audit), files
    return start


def send_dcmsend(work: Path, files: list[str]) -> tuple[float, float]:
    port = free_port()
    out = work / "dcmsend-out"
    shutil.rmtree(out, ignore_errors=True)
    scp_ = Storescp(out, port)
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(["dcmsend", "-aec", "RESEARCH", "-dn", "127.0.0.1", str(port), *files], env=env(),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wait_count(out, len(files), 60)
    finally:
        scp_.stop()
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def send_pynetdicom(work: Path, files: list[str]) -> tuple[float, float]:
    port = free_port()
    out = work / "scu-out"
    shutil.rmtree(out, ignore_errors=True)
    scp_ = Storescp(out, port)
    meta = dcmread(files[0], stop_before_pixels=True).file_meta
    pair = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
    peer = DicomPeer(Destination(name="bench", type="dicom", ae_title="RESEARCH", host="127.0.0.1", port=port),
                     "GANTRY")
    try:
        problem = peer.ensure({pair})
        if problem is not None:
            raise RuntimeError(problem.note)
        c0, t = time.process_time(), time.perf_counter()
        for f in files:
            result = peer.send(f, *pair)
            if not result.delivered:
                raise RuntimeError(result.note)
        elapsed, cpu = time.perf_counter() - t, time.process_time() - c0
        peer.close()
        wait_count(out, len(files), 60)
    finally:
        peer.close()
        scp_.stop()
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=600, help="instances (default 600)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns (default 512)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all cases (default 3)")
    args = parser.parse_args()
    for tool in ("storescu", "storescp", "dcmsend"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found: install dcmtk")

    work = Path(tempfile.mkdtemp(prefix="gantry-dimse-floor-"))
    try:
        corpus = work / "corpus"
        make_corpus(corpus, args.n, args.size)
        files = sorted(str(p) for p in corpus.iterdir())
        cases = {
            "receive: dcmtk storescp": lambda: recv_dcmtk(work, files),
            "receive: pynetdicom SCP, handler does nothing": lambda: recv_in_process(bare_pynetdicom(files)),
            "receive: gantry-node SCP alone (durable)": lambda: recv_in_process(gantry_receiver(work, files)),
            "send: dcmtk dcmsend": lambda: send_dcmsend(work, files),
            "send: gantry-node SCU (pynetdicom)": lambda: send_pynetdicom(work, files),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, run in cases.items():
                results[name].append(run())
        n = len(files)
        rate = {name: statistics.median(n / e for e, _ in runs) for name, runs in results.items()}
        cpu = {name: statistics.median(1000 * c / n for _, c in runs) for name, runs in results.items()}
        print(f"{n} instances of {args.size}x{args.size} CT, {args.rounds} rounds, median; one association, "
              "TCP_NODELAY")
        for name in cases:
            base = "receive: dcmtk storescp" if name.startswith("receive") else "send: dcmtk dcmsend"
            ratio = "" if name == base else f"  ({rate[name] / rate[base]:.2f} of dcmtk)"
            spread = ", ".join(f"{n / e:.0f}" for e, _ in results[name])
            print(f"  {name:48s} {rate[name]:7.1f}/s  {cpu[name]:5.2f} ms CPU/instance{ratio}  [{spread}]")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
