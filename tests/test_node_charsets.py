"""The patient's name in every character set, through the real node: dcmtk's dcmsend -> gantry-node
-> dcmtk's storescp. No planted value occurs in any received byte, in any encoding the
instance declares, nor in UTF-8 or Latin-1, in any case; and none in the node's logs."""

from __future__ import annotations

import subprocess

from pydicom.charset import convert_encodings

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
from tests.test_deid_charsets import CASES, CASINGS


def test_no_planted_name_in_any_received_byte(tmp_path):
    outbox = tmp_path / "in"
    outbox.mkdir()
    planted: list[tuple[str, tuple[str, ...]]] = []  # (value, python encodings of its instance)
    for n, (term, name, family, given) in enumerate(CASES):
        terms = term if isinstance(term, list) else [term]
        encodings = python_encodings(tuple(terms))
        study = Study.for_patient(name, f"PIDCS{n:04d}", "19700214").in_character_set(term)
        series = study.series("CT")
        for casing, change in CASINGS.items():
            text = f"{change(family)} / {change(given)} / {change(given + ' ' + family)} ({casing})"
            series.ct_image(rows=16, columns=16).with_free_text(text).save(outbox / f"{n:02d}-{casing}.dcm")
        planted += [(family, encodings), (given, encodings)]
        assert convert_encodings(terms)  # pydicom knows the character set

    port = free_port()
    with storescp(tmp_path / "research") as research_port:
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)],
                             policy={"options": {"retain_safe_private": True}})
        with running_node(config, port):
            sent = subprocess.run(["dcmsend", "-aec", "GANTRY", "127.0.0.1", str(port), *sorted(outbox.iterdir())],
                                  env=dcmtk_env(), capture_output=True, text=True, timeout=120)
            assert sent.returncode == 0, sent.stderr
            expected = len(list(outbox.iterdir()))
            files = wait_for(lambda: (f := received_files(tmp_path / "research")) and len(f) == expected and f,
                             timeout=120, what=f"{expected} instances delivered")
    received = [f.read_bytes() for f in files]
    logs = [config.with_suffix(".out").read_bytes(), (tmp_path / "data" / "audit.log").read_bytes()]
    for value, encodings in planted:
        for form in byte_forms(value, encodings):
            for data in received:
                assert form not in data.lower(), "a planted name part in a received instance"
            for log in logs:
                assert form not in log.lower(), "a planted name part in the node's logs"
