"""One corrupt instance in a study is quarantined with a reason an operator can read; the
rest of the study flows. The operator CLI lists it, shows it without PHI (unless --reveal),
and purges it."""

from __future__ import annotations

from tests.conftest import free_port
from tests.support.node import (
    PHI,
    assert_no_phi,
    make_ct,
    node_config,
    received_files,
    running_node,
    storescp,
    storescu,
    wait_for,
    write_study,
)


def test_corrupt_instance_is_quarantined_and_the_rest_flow(tmp_path, run_cli):
    study = write_study(tmp_path / "in", 5)
    bad = make_ct(study.study_uid, study.series_uid, "1.2.826.0.1.3680043.8.498.1234567890.1", 6)
    bad.PixelData = bad.PixelData[:100]  # pixel data far shorter than Rows x Columns says
    bad.save_as(tmp_path / "in" / "zz_corrupt.dcm", enforce_file_format=True)
    with storescp(tmp_path / "research") as research_port:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[
            {"name": "research", "ae_title": "RESEARCH", "host": "127.0.0.1", "port": research_port}])
        with running_node(config, port):
            assert storescu(port, tmp_path / "in").returncode == 0
            files = wait_for(lambda: len(f := received_files(tmp_path / "research")) >= 5 and f, timeout=60,
                             what="the 5 good instances delivered")
            listed = wait_for(lambda: "quarantined" in (r := run_cli("quarantine", "list", "--config", config)).stdout
                              and r, timeout=30, what="the corrupt instance quarantined")
    assert len(files) == 5
    assert "pixel data is 100 bytes" in listed.stdout and "expected (truncated)" in listed.stdout
    instance_id = listed.stdout.splitlines()[1].split()[0]
    shown = run_cli("quarantine", "show", instance_id, "--config", config, check=True)
    assert "quarantined" in shown.stdout
    assert_no_phi([shown.stdout.encode(), listed.stdout.encode()], "quarantine list/show")
    revealed = run_cli("quarantine", "show", instance_id, "--reveal", "--config", config, check=True)
    assert PHI["PatientID"] in revealed.stdout
    purged = run_cli("quarantine", "purge", instance_id, "--config", config, check=True)
    assert "purged" in purged.stdout
    assert run_cli("quarantine", "list", "--config", config, check=True).stdout.strip() == "nothing held"
    status = run_cli("status", "--config", config, check=True).stdout
    assert "forwarded" in status and "purged" in status
    tail = run_cli("tail", "--no-follow", "-n", "100", "--config", config, check=True).stdout
    assert "quarantined" in tail and "forwarded" in tail
    assert_no_phi([tail.encode()], "tail")
