"""The start-up self-check (issue 14, item 7): `serve` says once, at start, what the pixel
stage is missing and which images that will hold, and audits it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys

from gantry_node.node.config import config_from_mapping
from gantry_node.node.selfcheck import self_check
from tests.conftest import REPO, cli_env, free_port
from tests.support.node import node_config, stop, wait_for, wait_port


def test_serve_without_tesseract_says_what_it_will_hold(tmp_path):
    port = free_port()
    config = node_config(tmp_path, port)
    env = cli_env()
    tesseract_dir = os.path.dirname(shutil.which("tesseract"))
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if p and os.path.realpath(p) != os.path.realpath(tesseract_dir))
    log = tmp_path / "node.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gantry_node", "serve", "--config", str(config)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            wait_port(port, proc, timeout=30)

            def audited():
                with sqlite3.connect(tmp_path / "data" / "gantry.db") as conn:
                    return conn.execute("SELECT fields FROM audit WHERE event = 'self_check'").fetchall()

            rows = wait_for(audited, timeout=20, what="the self_check audit row")
        finally:
            stop(proc)
    text = log.read_text()
    said = [line for line in text.splitlines() if line.startswith("gantry-node: self-check:")]
    assert said == ["gantry-node: self-check: tesseract not found ('tesseract' is not on PATH): every US/SC "
                    "image that may carry burned-in text (screen captures count as SC) will be quarantined "
                    "(the OCR gate fails closed)"]
    assert len(rows) == 1 and "tesseract not found" in rows[0][0]


def test_missing_language_data_and_nothing_missing(tmp_path):
    assert self_check(config_from_mapping({})) == []  # tesseract with eng, pylibjpeg & co installed
    [finding] = self_check(config_from_mapping({"pixels": {"ocr": {"language": "eng+zzz"}}}))
    assert finding.missing.startswith("tesseract language data for zzz not found (pixels.ocr.language; installed: ")
    # an OCR gate enabled for no modality reads nothing: tesseract is then not needed
    assert self_check(config_from_mapping({"pixels": {"ocr": {"enabled_modalities": [], "language": "zzz"}}})) == []
