"""Issue 14, defect 8 (hygiene): a real node started with umask 000 still creates its files
0600 and folders 0700; the original SOP Instance UID leaves the index with the raw file; a
secret open to others stops `serve` with the chmod to run; operator commands end quietly on a
closed pipe; release and purge take several IDs or a filter, with a dry run."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from gantry_node.cli import main
from gantry_node.node.store import Store
from tests.conftest import REPO, cli_env, free_port
from tests.support.node import node_config, stop, storescu, wait_for, wait_port, write_study


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_node_files_are_private_whatever_the_umask_and_source_uids_go_with_the_raw_file(tmp_path):
    study = write_study(tmp_path / "in", 2)
    port = free_port()
    config = node_config(tmp_path, port)
    data = tmp_path / "data"
    out = open(tmp_path / "node.out", "wb")  # noqa: SIM115 -- closed below
    proc = subprocess.Popen([sys.executable, "-m", "gantry_node", "serve", "--config", str(config)],
                            env=cli_env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                            preexec_fn=lambda: os.umask(0))
    try:
        wait_port(port, proc, timeout=30)
        sent = storescu(port, tmp_path / "in")
        assert sent.returncode == 0, sent.stderr

        def purged():
            with sqlite3.connect(data / "gantry.db") as conn:
                return conn.execute("SELECT COUNT(*) FROM instances WHERE raw_purged = 1").fetchone()[0] == 2

        wait_for(purged, timeout=60, what="2 instances forwarded and purged")
        for name in ("gantry.db", "gantry.db-wal", "gantry.db-shm", "audit.log"):
            assert _mode(data / name) == 0o600, name
        for folder in (data, data / "inbox", data / "inbox" / "00", data / "outbox"):
            assert _mode(folder) == 0o700, folder
        made = [p for p in (data / "export").rglob("*")] + [p for p in (data / "outbox").rglob("*")]
        assert len([p for p in made if p.is_file()]) == 2
        assert made and not [p for p in made if _mode(p) & 0o007], "nothing open to others"
    finally:
        stop(proc)
        out.close()
    with sqlite3.connect(data / "gantry.db") as conn:
        kept = [r[0] for r in conn.execute("SELECT source_uid FROM instances")]
    assert len(kept) == 2 and all(k.startswith("purged:") for k in kept)
    blob = (data / "gantry.db").read_bytes()  # the WAL is checkpointed into it at the last close
    for uid in study.sop_uids:
        assert uid.encode() not in blob, "original SOP Instance UID left in the index file"


def test_serve_refuses_a_secret_open_to_others(tmp_path, run_cli):
    config = node_config(tmp_path, free_port())
    secret = tmp_path / "data" / "secret"
    secret.chmod(0o644)
    proc = run_cli("serve", "--config", config, timeout=60)
    assert proc.returncode == 2
    assert f"mode 0644); make it private to the node's user: chmod 600 {secret}" in proc.stderr
    assert "Traceback" not in proc.stderr


def _held_store(tmp_path):
    """A node state with four held instances: 1, 2 quarantined at verify, 3 at pixels, 4 forward_failed."""
    import yaml

    from gantry_node.node.store.db import CleanCopy

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    config = tmp_path / "q.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data)}))
    store = Store(data / "gantry.db")
    for i in range(1, 5):
        raw = data / f"raw{i}.dcm"
        raw.write_bytes(b"x")
        store.add_received(f"1.2.3.{i}", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", str(raw), "MOD", "::1")
    store.claim(10)
    for i, stage in ((1, "verify"), (2, "verify"), (3, "pixels")):
        store.mark_quarantined(i, f"{stage}: something", stage)
    store.mark_clean(4, [CleanCopy("export", str(data / "c4.dcm"), "2.25.4", "2.25.5", "2.25.6",
                                   "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")])
    [d] = store.due_deliveries("export", 10)
    store.delivery_failed(d, "failure status 0xA700", None)
    store.close()
    return config, data


def _states(data) -> dict[int, str]:
    with sqlite3.connect(data / "gantry.db") as conn:
        return dict(conn.execute("SELECT id, state FROM instances"))


def test_release_and_purge_take_several_ids_or_a_filter_with_a_dry_run(tmp_path, capsys):
    config, data = _held_store(tmp_path)
    before = _states(data)
    assert main(["quarantine", "release", "--config", str(config), "--stage", "verify", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "instance 1: would release" in out and "instance 2: would release" in out and "instance 3" not in out
    assert _states(data) == before
    assert main(["quarantine", "release", "--config", str(config), "--stage", "verify"]) == 0
    assert _states(data) == {1: "received", 2: "received", 3: "quarantined", 4: "forward_failed"}
    assert main(["quarantine", "purge", "--config", str(config), "--all", "-n"]) == 0
    assert "instance 3: would purge" in capsys.readouterr().out and (data / "raw3.dcm").exists()
    assert main(["quarantine", "purge", "--config", str(config), "3", "4"]) == 0
    assert _states(data) == {1: "received", 2: "received", 3: "purged", 4: "purged"}
    assert not (data / "raw3.dcm").exists() and (data / "raw1.dcm").exists()
    # one that is not held: the others are still done, the status says something failed
    assert main(["quarantine", "purge", "--config", str(config), "1"]) == 1
    assert "only held instances can be purged" in capsys.readouterr().err
    assert main(["quarantine", "release", "--config", str(config)]) == 2  # neither IDs nor a filter
    check = Store(data / "gantry.db").audit_verify()
    assert check.intact and check.rows == 4  # 2 released + 2 purged, audited


@pytest.mark.parametrize("command", [["status"], ["tail", "--no-follow", "-n", "500"], ["quarantine", "list"]])
def test_operator_commands_end_quietly_on_a_closed_pipe(tmp_path, command):
    config, data = _held_store(tmp_path)
    store = Store(data / "gantry.db")
    store.audit_append([("received", i, {"instance": i}, 1.0 + i) for i in range(500)])
    store.close()
    # as `gantry-node ... | head -1` once head has gone: the pipe has no reader left
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.Popen([sys.executable, "-m", "gantry_node", *command, "--config", str(config)],
                            env=cli_env(), stdout=write_end, stderr=subprocess.PIPE, cwd=REPO)
    os.close(write_end)
    err = proc.communicate(timeout=60)[1].decode()
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141
