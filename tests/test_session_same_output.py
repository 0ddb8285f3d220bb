"""One engine, three front doors: Session, `gantry-node deid` and the node's worker give the
same bytes for the same input, secret and policy (sealing off: CMS encryption draws a random
content key, so sealed outputs differ on every run by design)."""

from __future__ import annotations

from pathlib import Path

import yaml

from gantry_node import Session
from gantry_node.node import worker as node_worker
from gantry_node.node.config import build_engines, config_from_mapping
from tests.support.cohort import fill_in_config, make_cohort

POLICY = {"options": {"retain_patient_characteristics": True}, "overrides": {"SeriesDescription": "keep"}}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.dcm"))}


def test_session_cli_and_worker_write_the_same_bytes(tmp_path, secret_file, run_cli, monkeypatch):
    monkeypatch.delenv("GANTRY_SECRET_FILE", raising=False)
    raw = tmp_path / "raw"
    make_cohort(raw)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))

    with Session(tmp_path / "gantry.db", secret_file=secret_file, policy=policy_file) as s:
        s.import_folder(raw, progress=False)
        s.apply_remediation(progress=False)
        config = tmp_path / "config.yaml"
        s.scaffold_config(config)
        fill_in_config(config)
        s.load_config(config)
        s.execute_config(progress=False)
        report = s.export(tmp_path / "session", safe=True, progress=False)
    assert len(report.written) == 8 and len(report.held_back) == 1

    run_cli("deid", raw, tmp_path / "cli", "--secret-file", secret_file, "--policy", policy_file,
            "--pixels", config, "--no-progress")

    pixels = yaml.safe_load(config.read_text())["pixels"]
    node_config = config_from_mapping({"secret_file": str(secret_file), "policy": POLICY, "pixels": pixels})
    monkeypatch.setattr(node_worker, "_ENGINES", build_engines(node_config))
    outbox = tmp_path / "outbox"
    held = 0
    for path in sorted(raw.rglob("*.dcm")):
        outcome = node_worker.process_file(1, str(path), str(outbox), ("export",))
        held += not outcome.clean
    assert held == 2  # the truncated file and the ultrasound without a rule

    session = tree(tmp_path / "session")
    assert session == tree(tmp_path / "cli") == tree(outbox / "_node")
    assert len(session) == 8
