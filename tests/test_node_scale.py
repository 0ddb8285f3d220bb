"""Every stage across processes (issue 17, item 2): `node.receivers: N` listening processes on
one port (SO_REUSEPORT) whose association limit still holds for the node, and
`destinations[].associations: N` sender processes. Real peers on loopback: dcmtk storescu as
modalities, storescp (--fork: one process per association) as the destination, pynetdicom
as a peer holding associations open."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.conftest import free_port
from tests.support.node import (
    acknowledged,
    dcmtk_env,
    dicom_destination,
    expected_clean_uids,
    node_config,
    read_uids,
    received_files,
    running_node,
    storescp,
    wait_for,
    write_study,
)


def children_named(pid: int, name: str) -> list[int]:
    """Children of any thread of `pid` (the senders are started from their supervisor's threads)."""
    kids = [k for task in Path(f"/proc/{pid}/task").iterdir() for k in (task / "children").read_text().split()]
    return [int(k) for k in kids if Path(f"/proc/{k}/comm").read_text().strip() == name]


def sockets(port: int, state: str, side: int) -> int:
    """TCP sockets in `state` (01 established, 0A listening) whose local (side 1) or remote
    (side 2) port is `port` (this network namespace)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[side].endswith(f":{port:04X}") and fields[3] == state:
                count += 1
    return count


def holder(port: int, pids: list[int]) -> int:
    """Which of `pids` holds the established connection on local port `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "01":
                inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError("no receiver holds the association")


def established_to(port: int) -> int:
    return sockets(port, "01", 2)


def two_receivers(node: subprocess.Popen, port: int) -> list[int]:
    """The two receiver processes, once both listen on `port`."""
    wait_for(lambda: sockets(port, "0A", 1) == 2, timeout=30, what="two sockets listening on node.port")
    return wait_for(lambda: len(r := children_named(node.pid, "gantry-receiver")) == 2 and r, timeout=30,
                    what="two receiver processes")


def audit_events(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]


def send_all(port: int, folders: list[Path]) -> list[subprocess.Popen]:
    return [subprocess.Popen(["storescu", "-v", "-aet", f"ROUTE{i}", "-aec", "GANTRY", "+sd", "127.0.0.1",
                              str(port), str(folder)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=dcmtk_env())
            for i, folder in enumerate(folders)]


def uids_of(folder: Path, names: set[str]) -> set[str]:
    return set(read_uids([folder / n for n in sorted(names)]))


def test_two_receivers_take_concurrent_associations_and_survive_one_killed(tmp_path):
    studies = [write_study(tmp_path / f"in{i}", 40, size=96) for i in range(4)]
    with storescp(tmp_path / "research", extra=("--fork",)) as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)],
                             node={"receivers": 2})
        with running_node(config, port) as node:
            receivers = two_receivers(node, port)
            # four modalities at once; one receiver is killed while they send
            folders = [tmp_path / f"in{i}" for i in range(4)]
            senders = send_all(port, folders)
            wait_for(lambda: sum(e["event"] == "received" for e in audit_events(tmp_path)) >= 30, timeout=60,
                     what="the burst under way")
            os.kill(receivers[0], signal.SIGKILL)
            outputs = [s.communicate(timeout=120)[0] for s in senders]
            acked = set()
            for folder, output in zip(folders, outputs, strict=True):
                acked |= uids_of(folder, acknowledged(output))
            assert node.poll() is None, "the node keeps running on its other receiver"
            # the dead one is restarted, and the restarted pair takes a second burst whole
            two_receivers(node, port)  # the killed one restarted
            again = send_all(port, folders)
            for s in again:
                output = s.communicate(timeout=120)[0]
                assert s.returncode == 0, output
            everything = {u for s in studies for u in s.sop_uids}
            expected = expected_clean_uids(tmp_path / "data" / "secret", everything)
            wait_for(lambda: set(read_uids(received_files(tmp_path / "research"))) >= expected, timeout=120,
                     what="every instance at the destination")
    assert acked, "some instances were acknowledged before the kill"
    assert expected_clean_uids(tmp_path / "data" / "secret", acked) <= expected
    events = audit_events(tmp_path)
    assert any(e["event"] == "component_failed" and e["component"].startswith("receiver-")
               and e["outcome"] == "restarting" for e in events)


def test_an_acknowledged_instance_is_never_lost_when_its_receiver_dies(tmp_path):
    """What a killed receiver acknowledged (before the restart brings anything back) arrives."""
    write_study(tmp_path / "in", 200, size=96)
    with storescp(tmp_path / "research", extra=("--fork",)) as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)],
                             node={"receivers": 2})
        with running_node(config, port) as node:
            two_receivers(node, port)
            sender = send_all(port, [tmp_path / "in"])[0]
            wait_for(lambda: sum(e["event"] == "received" for e in audit_events(tmp_path)) >= 20, timeout=60,
                     what="the burst under way")
            os.kill(holder(port, children_named(node.pid, "gantry-receiver")), signal.SIGKILL)
            output = sender.communicate(timeout=120)[0]
            acked = uids_of(tmp_path / "in", acknowledged(output))
            assert sender.returncode != 0 and 0 < len(acked) < 200, "the kill cut the association short"
            expected = expected_clean_uids(tmp_path / "data" / "secret", acked)
            wait_for(lambda: set(read_uids(received_files(tmp_path / "research"))) >= expected, timeout=120,
                     what="every acknowledged instance at the destination")
            assert node.poll() is None


def test_the_association_limit_holds_for_the_node_not_per_receiver(tmp_path):
    port = free_port()
    config = node_config(tmp_path, port, node={"receivers": 2, "max_associations": 2})
    with running_node(config, port) as node:
        two_receivers(node, port)
        ae = AE(ae_title="HOLDER")
        ae.add_requested_context(Verification)
        held = [ae.associate("127.0.0.1", port, ae_title="GANTRY") for _ in range(6)]
        try:
            accepted = [a for a in held if a.is_established]
            assert len(accepted) == 2, [a.is_established for a in held]
            assert all(a.is_rejected for a in held if not a.is_established)
        finally:
            for a in held:
                if a.is_established:
                    a.release()
        # the slots come back: two more may associate
        again = [ae.associate("127.0.0.1", port, ae_title="GANTRY") for _ in range(2)]
        assert all(a.is_established for a in again)
        for a in again:
            a.release()


def test_a_destination_with_three_associations_gets_everything_over_several(tmp_path):
    study = write_study(tmp_path / "in", 90, size=96)
    with storescp(tmp_path / "research", extra=("--fork",)) as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port,
                                                                             associations=3)])
        with running_node(config, port) as node:
            wait_for(lambda: len(children_named(node.pid, "gantry-sender")) == 3, timeout=30,
                     what="three sender processes")
            result = subprocess.run(["storescu", "-aec", "GANTRY", "+sd", "127.0.0.1", str(port),
                                     str(tmp_path / "in")], capture_output=True, text=True, env=dcmtk_env(),
                                    timeout=120)
            assert result.returncode == 0, result.stderr
            # idle associations are released after 5 s: several are open at once before that
            wait_for(lambda: established_to(research_port) >= 2, timeout=60, interval=0.02,
                     what="several associations to the destination at once")
            expected = expected_clean_uids(tmp_path / "data" / "secret", study.sop_uids)
            files = wait_for(lambda: set(read_uids(f := received_files(tmp_path / "research"))) >= expected and f,
                             timeout=120, what="every instance at the destination")
    assert len(files) == len(expected)
    events = audit_events(tmp_path)
    forwarded = {e["instance"] for e in events if e["event"] == "forwarded"}
    assert len(forwarded) == len(expected)
    assert not any(e["event"] == "component_failed" for e in events)
