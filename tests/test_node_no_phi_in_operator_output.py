"""No planted value anywhere an operator or a log shipper looks (issue 14, observability
without PHI): a PHI-laden corpus in several character sets goes through the real node (dcmtk's
dcmsend in, dcmtk's storescp out), some of it clean and some quarantined (an ultrasound from a
device without a rule, a CT with a name in kept text that an override writes back); then none
of the planted values, in any byte form of its instance's character sets, occurs in the node's
output and audit.log, the audit table, `status`, `tail`, `quarantine list/show` (without
--reveal), or the metrics page."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import urllib.request

from gantry_node.engine.deid.matching import byte_forms, python_encodings
from gantry_node.testing import Study
from tests.conftest import free_port
from tests.support.node import (
    dcmtk_env,
    dicom_destination,
    node_config,
    received_files,
    running_node,
    storescp,
    wait_for,
)
from tests.test_deid_charsets import CASES

MAKER, MODEL = "Zyxwv Planted Imaging", "Qqmodel-9731"
PICKED = [c for c in CASES if (c[0] if isinstance(c[0], str) else c[0][-1]) in
          ("ISO_IR 100", "ISO_IR 144", "ISO 2022 IR 87", "GB18030", "ISO_IR 192", "ISO 2022 IR 149")]


def test_no_planted_value_in_any_operator_output(tmp_path, run_cli):
    outbox = tmp_path / "in"
    outbox.mkdir()
    planted: list[tuple[str, tuple[str, ...]]] = []
    for n, (term, name, family, given) in enumerate(PICKED):
        encodings = python_encodings(tuple(term if isinstance(term, list) else [term]))
        patient_id = f"PHIMRN{n:05d}"
        study = Study.for_patient(name, patient_id, "19610423").in_character_set(term).accession(f"PHIACC{n:04d}")
        text = f"{family.upper()} {given} seen, MRN {patient_id}"
        study.series("CT").ct_image(rows=16, columns=16).with_free_text(text).with_all_phi() \
            .save(outbox / f"{n:02d}-ct.dcm")
        us = study.series("US").us_image(rows=48, columns=64).build()
        us.Manufacturer, us.ManufacturerModelName = MAKER, MODEL
        us.save_as(outbox / f"{n:02d}-us.dcm", enforce_file_format=True)
        planted += [(family, encodings), (given, encodings), (patient_id, encodings), (f"PHIACC{n:04d}", encodings),
                    (MAKER, encodings), (MODEL, encodings), ("19610423", encodings)]
    port, metrics_port = free_port(), free_port()
    with storescp(tmp_path / "research") as research_port:
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)],
                             node={"metrics_port": metrics_port})
        with running_node(config, port):
            sent = subprocess.run(["dcmsend", "-aec", "GANTRY", "127.0.0.1", str(port), *sorted(outbox.iterdir())],
                                  env=dcmtk_env(), capture_output=True, text=True, timeout=120)
            assert sent.returncode == 0, sent.stderr

            def settled():
                states = json.loads(run_cli("status", "--json", "--config", config).stdout)["states"]
                return states.get("forwarded", 0) + states.get("quarantined", 0) == 2 * len(PICKED) and states

            states = wait_for(settled, timeout=120, what="every instance forwarded or quarantined")
            assert states["quarantined"] >= len(PICKED) and states["forwarded"] >= 1
            outputs = {
                "status": run_cli("status", "--config", config, check=True).stdout,
                "status --json": run_cli("status", "--json", "--config", config, check=True).stdout,
                "tail": run_cli("tail", "--no-follow", "-n", "1000", "--config", config, check=True).stdout,
                "tail --json": run_cli("tail", "--json", "--no-follow", "-n", "1000", "--config", config,
                                       check=True).stdout,
                "quarantine list": run_cli("quarantine", "list", "--config", config, check=True).stdout,
            }
            held = [line.split()[0] for line in outputs["quarantine list"].splitlines()[1:] if line.split()
                    and line.split()[0].isdigit()]
            assert held, outputs["quarantine list"]
            for instance_id in held:
                outputs[f"quarantine show {instance_id}"] = run_cli("quarantine", "show", instance_id, "--config",
                                                                    config, check=True).stdout
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as page:
                outputs["metrics page"] = page.read().decode()
        received = wait_for(lambda: received_files(tmp_path / "research"), timeout=30, what="deliveries")
    db = sqlite3.connect(tmp_path / "data" / "gantry.db")
    outputs["audit table"] = "\n".join(f"{e} {f}" for e, f in db.execute("SELECT event, fields FROM audit"))
    outputs["quarantine reasons"] = "\n".join(r or "" for (r,) in db.execute("SELECT reason FROM instances"))
    db.close()
    blobs = {where: text.encode("utf-8", "surrogateescape") for where, text in outputs.items()}
    blobs["node output"] = config.with_suffix(".out").read_bytes()
    blobs["audit.log"] = (tmp_path / "data" / "audit.log").read_bytes()
    blobs.update({f"received {p.name}": p.read_bytes() for p in received})
    for value, encodings in planted:
        forms = byte_forms(value, encodings) | {value.encode("utf-8").lower()}
        for where, blob in blobs.items():
            lowered = blob.lower()
            hit = next((f for f in forms if f in lowered), None)
            assert hit is None, f"a planted value ({len(value)} characters) occurs in {where}"
