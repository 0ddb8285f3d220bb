"""With nothing configured but where to listen, the node keeps its state in ./gantry-data,
creates a secret there on first start (mode 0600, and says so), and delivers to the folder
./gantry-data/export."""

from __future__ import annotations

import stat
import subprocess
import sys

import pydicom

from tests.conftest import cli_env, free_port
from tests.support.node import assert_no_phi, received_files, stop, storescu, wait_for, wait_port, write_study


def test_defaults_create_a_secret_and_export_to_a_folder(tmp_path):
    study = write_study(tmp_path / "in", 3)
    port = free_port()
    config = tmp_path / "listen.yaml"
    config.write_text(f"node: {{bind: 127.0.0.1, port: {port}}}\n")
    out = tmp_path / "serve.out"
    with open(out, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gantry_node", "serve", "--config", str(config)],
                                cwd=tmp_path, env=cli_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_port(port, proc, timeout=30)
            assert storescu(port, tmp_path / "in").returncode == 0
            files = wait_for(lambda: len(f := received_files(tmp_path / "gantry-data" / "export")) >= 3 and f,
                             timeout=60, what="3 instances exported")
        finally:
            stop(proc)
    secret = tmp_path / "gantry-data" / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "gantry-data").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "gantry-data" / "inbox").stat().st_mode) == 0o700
    text = out.read_text()
    assert f"created a new site secret at {secret.relative_to(tmp_path)}" in text
    uids = {str(pydicom.dcmread(p).SOPInstanceUID) for p in files}
    assert len(uids) == 3 and not uids & set(study.sop_uids)
    assert_no_phi([p.read_bytes() for p in files], "exported files")
