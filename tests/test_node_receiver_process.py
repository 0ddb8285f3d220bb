"""The SCP runs in a process of its own (gantry_node/node/receiver.py). If that process dies the node
says so and exits non-zero, for its supervisor (systemd Restart=on-failure) to restart it, and
what it acknowledged is still there after the restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

from tests.conftest import free_port
from tests.support.node import (
    dcmtk_env,
    dicom_destination,
    expected_clean_uids,
    node_config,
    read_uids,
    received_files,
    running_node,
    storescp,
    storescu,
    wait_for,
    write_study,
)


def children_named(pid: int, name: str) -> list[int]:
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(k) for k in kids if Path(f"/proc/{k}/comm").read_text().strip() == name]


def test_receiver_is_its_own_process_and_its_death_stops_the_node(tmp_path, run_cli):
    study = write_study(tmp_path / "in", 6)
    research_port, port = free_port(), free_port()
    config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)])
    with running_node(config, port) as node:
        assert storescu(port, tmp_path / "in").returncode == 0
        receivers = children_named(node.pid, "gantry-receiver")
        assert len(receivers) == 1
        os.kill(receivers[0], signal.SIGKILL)
        assert node.wait(timeout=20) == 1
    audit = [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]
    assert any(e["event"] == "component_failed" and e["component"] == "receiver"
               and e["reason"] == "the receiver process exited" and e["outcome"] == "failed" for e in audit)
    assert any(e["event"] == "node_stopped" and e.get("reason") == "receiver failed" for e in audit)
    assert not (tmp_path / "data" / "stopped-cleanly").exists()
    # restarted, the node forwards all six it had acknowledged
    with storescp(tmp_path / "research", port=research_port), running_node(config, port):
        files = wait_for(lambda: len(f := received_files(tmp_path / "research")) >= 6 and f, timeout=60,
                         what="the six acknowledged instances delivered after the restart")
    assert set(read_uids(files)) == expected_clean_uids(tmp_path / "data" / "secret", study.sop_uids)


def test_killed_node_takes_its_receiver_along(tmp_path):
    port = free_port()
    config = node_config(tmp_path, port)
    with running_node(config, port) as node:
        receiver = children_named(node.pid, "gantry-receiver")[0]
        node.send_signal(signal.SIGKILL)
        node.wait()
        wait_for(lambda: not Path(f"/proc/{receiver}").exists() or
                 Path(f"/proc/{receiver}/stat").read_text().split()[2] == "Z", timeout=10,
                 what="the receiver gone with the node")


def test_port_in_use_is_one_clear_line_naming_the_key(tmp_path, run_cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = node_config(tmp_path, port)
        result = run_cli("serve", "--config", config)
    assert result.returncode == 2
    assert f"node.port: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_stopping_lets_the_association_in_progress_finish(tmp_path, run_cli):
    write_study(tmp_path / "in", 300)  # a few seconds of sending
    port = free_port()
    config = node_config(tmp_path, port)
    audit = tmp_path / "data" / "audit.log"
    with running_node(config, port) as node:
        sender = subprocess.Popen(
            ["storescu", "-aec", "GANTRY", "+sd", "127.0.0.1", str(port), str(tmp_path / "in")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dcmtk_env())
        wait_for(lambda: audit.exists() and audit.read_text().count('"received"') >= 20, timeout=30,
                 what="the burst under way")
        node.send_signal(signal.SIGTERM)
        output = sender.communicate(timeout=60)[0]
        assert node.wait(timeout=60) == 0
    assert sender.returncode == 0, output
    held = json.loads(run_cli("status", "--json", "--config", config, check=True).stdout)["states"]
    assert sum(held.values()) == 300
