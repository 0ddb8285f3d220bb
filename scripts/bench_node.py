#!/usr/bin/env python3
"""Benchmark the node against a baseline measured in the same run.

    python scripts/bench_node.py [-n 2000] [--size 512] [--nagle-n 300] [--waiting 10000] [--senders 1]

1. baseline: dcmtk storescu -> dcmtk storescp, the same corpus (instances/s);
2. node: storescu -> gantry-node -> storescp: ingest (acknowledged/s, when storescu finishes)
   and end-to-end (arrived at storescp/s), peak RSS of the node and its worker processes;
   and the CPU each process role spent per instance (/proc counters), against the budget of the
   throughput issue (receiver 4 ms, workers 4 ms, main process: forwarder 4 + bookkeeping 1 ms);
3. Nagle: end-to-end on a smaller corpus with node.tcp_nodelay false vs true;
4. optionally, peak RSS with --waiting N instances held (research PACS down);
5. --peers: Orthanc (Debian's package) as a Lua router over the same corpus, to the same kind of
   storescp: each stored instance anonymized (Orthanc's /anonymize, its basic profile), the
   result stored, sent with C-STORE and both copies deleted; gantry-node's ratio to it.

--senders K sends with K storescu processes at once (K associations, as a PACS routing rule
with several associations does), for the baseline and the node alike. --receivers N and
--associations N set node.receivers and destinations[].associations of the node; with
--associations above 1 the node's storescp runs with --fork (one process per association, its
CPU added up), as it could not take them at once otherwise.

All peers run with TCP_NODELAY=1 in their environment. storescu reads every file before it
connects; that time is measured separately (against a closed port) and subtracted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

# pynetdicom installs storescu/storescp scripts next to the interpreter: use dcmtk's.
_PYTHON_BIN = str(Path(sys.executable).parent)
os.environ["PATH"] = os.pathsep.join(
    [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != _PYTHON_BIN] + [_PYTHON_BIN])

REPO = Path(__file__).resolve().parent.parent


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["TCP_NODELAY"] = "1"
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def make_corpus(folder: Path, n: int, size: int, per_series: int = 100) -> None:
    """n synthetic 12-bit CT instances (gantry_node.testing), 100 per series, one patient per
    500 instances (the patient's name and ID, no other planted PHI)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from gantry_node.testing import make_ct_corpus

    folder.mkdir(parents=True)
    make_ct_corpus(n, folder, patients=max(1, -(-n // (per_series * 5))), slices_per_series=per_series,
                   rows=size, columns=size, phi=False, bits=12)


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


SENDERS = 1  # storescu processes (associations) sending at once; --senders
RECEIVERS = 1  # node.receivers; --receivers
ASSOCIATIONS = 1  # destinations[].associations; --associations


def storescu(port: int, corpus: Path, called: str) -> float:
    """Send the corpus with SENDERS storescu processes at once (each its share of the files);
    seconds until the last one finished."""
    files = sorted(str(p) for p in corpus.iterdir())
    t = time.perf_counter()
    procs = [subprocess.Popen(["storescu", "-aec", called, "127.0.0.1", str(port), *files[i::SENDERS]],
                              env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(SENDERS)]
    errors = [p.communicate()[1] for p in procs]
    elapsed = time.perf_counter() - t
    failed = [e for p, e in zip(procs, errors, strict=True) if p.returncode != 0]
    if failed and port != CLOSED_PORT:
        raise RuntimeError(f"storescu failed: {failed[0][-500:]}")
    return elapsed


CLOSED_PORT = free_port()


class Storescp:
    def __init__(self, folder: Path, port: int, fork: bool = False):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.port = folder, port
        self.proc = subprocess.Popen(["storescp", "-aet", "RESEARCH", "-od", str(folder), "+xa",
                                      *(["--fork"] if fork else []), str(port)],
                                     env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def wait_count(folder: Path, n: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while count_files(folder) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {count_files(folder)} of {n} arrived in {folder}")
        time.sleep(0.05)
    return time.perf_counter()


class RssSampler(threading.Thread):
    """Peak resident set size of a process and its children (receiver, workers), sampled."""

    def __init__(self, pid: int, peers: tuple[int, ...] = ()):
        super().__init__(daemon=True)
        self.pid, self.peak, self.peak_main, self.running = pid, 0, 0, True
        self.peers = peers  # other processes whose CPU is reported (the destination storescp)
        self.peak_by_role: dict[str, int] = {}
        self.cpu: dict[int, tuple[str, int]] = {}  # pid -> (role, utime + stime in clock ticks)

    def tree(self, root: int | None = None) -> list[int]:
        root = self.pid if root is None else root
        pids, todo = [root], [root]
        while todo:
            p = todo.pop()
            try:  # children of every thread (the node starts sender processes from threads)
                kids = [k for t in Path(f"/proc/{p}/task").iterdir() for k in (t / "children").read_text().split()]
            except OSError:
                kids = []
            pids += map(int, kids)
            todo += map(int, kids)
        return pids

    @staticmethod
    def rss(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def role(self, pid: int) -> str:
        if pid == self.pid:
            return "main"
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return "other"
        return {"gantry-receiver": "receiver", "gantry-sender": "sender"}.get(comm, "worker/helper")

    @staticmethod
    def ticks(pid: int) -> int | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)

    def sample_cpu(self) -> None:
        peer_pids = {p for peer in self.peers for p in self.tree(peer)}
        for pid in [*self.tree(), *(p for peer in self.peers for p in self.tree(peer))]:
            ticks = self.ticks(pid)
            if ticks is not None:
                self.cpu[pid] = ("storescp" if pid in peer_pids else self.role(pid), ticks)

    def cpu_ms(self, n: int) -> dict[str, float]:
        """CPU milliseconds per instance by role (workers added up)."""
        self.sample_cpu()
        per_role: dict[str, float] = {}
        tick = 1000 / os.sysconf("SC_CLK_TCK")
        for role, ticks in self.cpu.values():
            per_role[role] = per_role.get(role, 0) + ticks * tick / n
        return per_role

    def run(self) -> None:
        while self.running:
            self.sample_cpu()
            sizes = {p: self.rss(p) for p in self.tree()}
            self.peak = max(self.peak, sum(sizes.values()))
            self.peak_main = max(self.peak_main, sizes.get(self.pid, 0))
            for pid, size in sizes.items():
                role = self.role(pid)
                self.peak_by_role[role] = max(self.peak_by_role.get(role, 0), size)
            time.sleep(0.2)

    def roles(self) -> str:
        mb = 1024 * 1024
        return ", ".join(f"{role} {size / mb:.0f} MB" for role, size in sorted(self.peak_by_role.items()))


def start_node(work: Path, port: int, dest_port: int, workers: int, nodelay: bool = True) -> subprocess.Popen:
    data = work / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(mode=0o700)
    (data / "secret").write_bytes(b"benchmark-secret-0123456789abcdef")
    (data / "secret").chmod(0o600)  # serve refuses a secret others may read
    config = work / "node.yaml"
    config.write_text(yaml.safe_dump({
        "node": {"bind": "127.0.0.1", "port": port, "ae_title": "GANTRY", "tcp_nodelay": nodelay,
                 "receivers": RECEIVERS},
        "data_dir": str(data), "secret_file": str(data / "secret"), "workers": {"processes": workers},
        "destinations": [{"name": "research", "ae_title": "RESEARCH", "host": "127.0.0.1", "port": dest_port,
                          "backoff_initial": 0.5, "backoff_max": 2, "max_attempts": 100000,
                          "associations": ASSOCIATIONS}],
        "logging": {"stdout": False},
    }))
    proc = subprocess.Popen([sys.executable, "-m", "gantry_node", "serve", "--config", str(config)], env=env(),
                            stdout=subprocess.DEVNULL, stderr=open(work / "node.err", "ab"), cwd=REPO)  # noqa: SIM115
    wait_port(port)
    return proc


def stop_node(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_node(work: Path, corpus: Path, n: int, check: float, workers: int, nodelay: bool = True) -> dict:
    out = work / f"node-out-{int(nodelay)}"
    if out.exists():
        shutil.rmtree(out)
    dest = Storescp(out, free_port(), fork=ASSOCIATIONS > 1)
    port = free_port()
    node = start_node(work, port, dest.port, workers, nodelay)
    sampler = RssSampler(node.pid, (dest.proc.pid,))
    # the port answers once the first receiver listens: let the others (and the senders) start
    # before the start-up CPU is taken, or theirs would count against the instances
    want = {"receiver": RECEIVERS, "sender": ASSOCIATIONS if ASSOCIATIONS > 1 else 0}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        roles = [sampler.role(p) for p in sampler.tree()]
        if all(roles.count(role) >= k for role, k in want.items()):
            break
        time.sleep(0.1)
    time.sleep(1.0)
    sampler.sample_cpu()
    start_cpu = dict(sampler.cpu)  # what start-up cost, taken off below
    sampler.start()
    try:
        t0 = time.perf_counter()
        sent = storescu(port, corpus, "GANTRY")
        arrived = wait_count(out, n, timeout=max(600, n))
        cpu = sampler.cpu_ms(n)
        for role, ticks in start_cpu.values():
            cpu[role] -= ticks * 1000 / os.sysconf("SC_CLK_TCK") / n
    finally:
        sampler.running = False
        stop_node(node)
        dest.stop()
    net = max(sent - check, 1e-6)
    return {"ingest": n / net, "e2e": n / (arrived - t0 - check), "rss": sampler.peak, "rss_main": sampler.peak_main,
            "roles": sampler.roles(), "cpu": cpu}


# CPU per instance each role may spend (ms) for the targets on two cores (the throughput issue)
BUDGET_MS = {"receiver": 4.0, "worker/helper": 4.0, "main": 5.0}


def cpu_table(cpu: dict[str, float]) -> str:
    lines = ["CPU per instance by process role (ms; budget in brackets):"]
    for role in ("receiver", "worker/helper", "main", "sender", "storescp"):
        if role in cpu:
            budget = BUDGET_MS.get(role)
            mark = "" if budget is None else f" [{budget:.0f}] {'within' if cpu[role] <= budget else 'OVER'}"
            lines.append(f"  {role:14s} {cpu[role]:6.2f}{mark}")
    node_total = sum(v for r, v in cpu.items() if r != "storescp")
    lines.append(f"  {'node in all':14s} {node_total:6.2f} [13]  -> at most {2000 / node_total:.0f}/s on two cores "
                 "if nothing else ran")
    return "\n".join(lines)


def run_waiting(work: Path, n: int, workers: int) -> dict:
    corpus = work / "waiting-corpus"
    make_corpus(corpus, n, 128)
    port = free_port()
    node = start_node(work, port, CLOSED_PORT, workers)
    sampler = RssSampler(node.pid)
    sampler.start()
    try:
        storescu(port, corpus, "GANTRY")
        # until every instance is de-identified and waiting for the (down) research PACS
        import sqlite3

        db = work / "data" / "gantry.db"
        while True:
            with sqlite3.connect(db) as conn:
                left = conn.execute("SELECT COUNT(*) FROM instances WHERE state IN ('received', 'processing')"
                                    ).fetchone()[0]
            if left == 0:
                break
            time.sleep(1)
        time.sleep(2)
    finally:
        sampler.running = False
        stop_node(node)
    shutil.rmtree(corpus)
    return {"rss": sampler.peak, "rss_main": sampler.peak_main, "roles": sampler.roles()}


ORTHANC_ROUTER = """
function OnStoredInstance(instanceId, tags, metadata, origin)
   if origin['RequestOrigin'] ~= 'Lua' then
      local anonymized = RestApiPost('/instances/' .. instanceId .. '/anonymize', '{}')
      local stored = ParseJson(RestApiPost('/instances', anonymized))
      RestApiPost('/modalities/research/store', stored['ID'])
      RestApiDelete('/instances/' .. stored['ID'])
      RestApiDelete('/instances/' .. instanceId)
   end
end
"""


def run_orthanc(work: Path, corpus: Path, n: int, check: float) -> dict:
    """Orthanc as an anonymizing router: ingest and end-to-end rates, like run_node."""
    import json

    if shutil.which("Orthanc") is None:
        raise SystemExit("--peers needs Orthanc (apt-get install orthanc)")
    root = work / "orthanc"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    out = work / "orthanc-out"
    dest = Storescp(out, free_port())
    dicom_port, http_port = free_port(), free_port()
    (root / "router.lua").write_text(ORTHANC_ROUTER)
    config = root / "orthanc.json"
    config.write_text(json.dumps({
        "Name": "router", "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port,
        "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomCheckCalledAet": False,
        "Plugins": [], "LuaScripts": [str(root / "router.lua")],
        "DicomModalities": {"research": ["RESEARCH", "127.0.0.1", dest.port]},
    }))
    proc = subprocess.Popen(["Orthanc", str(config)], stdout=open(root / "orthanc.log", "wb"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, env=env())
    try:
        wait_port(dicom_port)
        t0 = time.perf_counter()
        sent = storescu(dicom_port, corpus, "ORTHANC")
        arrived = wait_count(out, n, timeout=max(900, 3 * n))
    finally:
        proc.terminate()
        proc.wait()
        dest.stop()
    shutil.rmtree(out, ignore_errors=True)
    return {"ingest": n / max(sent - check, 1e-6), "e2e": n / (arrived - t0 - check)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=2000, help="instances in the corpus (2000)")
    ap.add_argument("--size", type=int, default=512, help="rows and columns of each CT image (512)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes in the node (2)")
    ap.add_argument("--nagle-n", type=int, default=300, help="corpus size for the Nagle on/off comparison (300)")
    ap.add_argument("--waiting", type=int, default=0, help="also measure RSS with this many instances waiting")
    ap.add_argument("--senders", type=int, default=1,
                    help="storescu processes sending at once, one association each (1), for baseline and node")
    ap.add_argument("--receivers", type=int, default=1, help="node.receivers (1)")
    ap.add_argument("--associations", type=int, default=1, help="destinations[].associations (1)")
    ap.add_argument("--peers", action="store_true", help="also run Orthanc as an anonymizing Lua router")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    global SENDERS, RECEIVERS, ASSOCIATIONS
    SENDERS = max(1, args.senders)
    RECEIVERS, ASSOCIATIONS = max(1, args.receivers), max(1, args.associations)
    work = Path(tempfile.mkdtemp(prefix="gantry-bench-"))
    try:
        corpus = work / "corpus"
        t = time.perf_counter()
        make_corpus(corpus, args.n, args.size)
        print(f"corpus: {args.n} CT instances {args.size}x{args.size} ({time.perf_counter() - t:.1f} s to build), "
              f"sent by {SENDERS} storescu association(s) at once; node.receivers {RECEIVERS}, "
              f"destinations[].associations {ASSOCIATIONS}")
        check = storescu(CLOSED_PORT, corpus, "X")
        print(f"storescu file check before connecting: {check:.2f} s (subtracted below)")

        base_out = work / "baseline-out"
        dest = Storescp(base_out, free_port())
        try:
            t0 = time.perf_counter()
            storescu(dest.port, corpus, "RESEARCH")
            done = wait_count(base_out, args.n, 600)
        finally:
            dest.stop()
        baseline = args.n / (done - t0 - check)
        shutil.rmtree(base_out)

        node = run_node(work, corpus, args.n, check, args.workers)
        mb = 1024 * 1024
        print(f"baseline storescu -> storescp:      {baseline:8.1f} instances/s")
        print(f"node ingest (acknowledged):         {node['ingest']:8.1f} instances/s  "
              f"ratio to baseline {node['ingest'] / baseline:.2f}")
        print(f"node end-to-end (at storescp):      {node['e2e']:8.1f} instances/s  "
              f"ratio to baseline {node['e2e'] / baseline:.2f}")
        print(f"node peak RSS: {node['rss'] / mb:.0f} MB in all (peak per process: {node['roles']})")
        print(cpu_table(node["cpu"]))

        if args.peers:
            peer = run_orthanc(work, corpus, args.n, check)
            print(f"Orthanc Lua router ingest:          {peer['ingest']:8.1f} instances/s  "
                  f"gantry-node x{node['ingest'] / peer['ingest']:.2f}")
            print(f"Orthanc Lua router end-to-end:      {peer['e2e']:8.1f} instances/s  "
                  f"gantry-node x{node['e2e'] / peer['e2e']:.2f}")
        if args.nagle_n:
            small = work / "nagle-corpus"
            small.mkdir()
            for p in sorted(corpus.iterdir())[: args.nagle_n]:
                os.link(p, small / p.name)
            check_small = storescu(CLOSED_PORT, small, "X")
            on = run_node(work, small, args.nagle_n, check_small, args.workers, nodelay=True)
            off = run_node(work, small, args.nagle_n, check_small, args.workers, nodelay=False)
            print(f"Nagle ({args.nagle_n} instances): node.tcp_nodelay true: ingest {on['ingest']:.1f}/s, "
                  f"end-to-end {on['e2e']:.1f}/s; false: ingest {off['ingest']:.1f}/s, end-to-end {off['e2e']:.1f}/s "
                  f"(end-to-end x{on['e2e'] / off['e2e']:.2f} with TCP_NODELAY)")
        if args.waiting:
            w = run_waiting(work, args.waiting, args.workers)
            print(f"peak RSS with {args.waiting} instances waiting (PACS down): {w['rss'] / mb:.0f} MB in all "
                  f"(peak per process: {w['roles']})")
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
