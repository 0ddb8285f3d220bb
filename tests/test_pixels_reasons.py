"""Quarantine reasons of the pixel stage quote no value of the data set (issue 14 item 6).

Manufacturer and Manufacturer's Model Name are device identity, removed by default; a reason
reaches audit.log, the journal, `tail` and `quarantine list/show`. The device is named by its
key (a keyed hash, d-xxxxxx), which `gantry-node rules scaffold --secret-file` prints next to
the device it lists."""

from __future__ import annotations

import json

import pydicom
import pytest
from pydicom import uid
from pydicom.dataset import Dataset

from gantry_node.engine.deid import Keys, default_policy
from gantry_node.engine.pipeline import Engine, Quarantine, process
from gantry_node.engine.pixels.codec import PixelDecodeError, decode, syntax_name
from gantry_node.engine.pixels.config import parse_pixels_section
from gantry_node.engine.pixels.device import device_key
from gantry_node.engine.pixels.stage import make_pixel_stage
from gantry_node.testing import Study
from tests.conftest import SECRET, free_port
from tests.support.node import node_config, running_node, storescu, wait_for

MAKER = "Zyxwv Planted Imaging"
MODEL = "Qqmodel-9731"
NODE_SECRET = b"node-test-secret-0123456789abcdef"  # what tests.support.node.node_config writes


def planted_us() -> Dataset:
    ds = Study.for_patient(name="DOE^JANE", patient_id="MRN12345").series("US").us_image(rows=96, columns=128).build()
    ds.Manufacturer, ds.ManufacturerModelName = MAKER, MODEL
    return ds


def assert_clean(text: str, where: str) -> None:
    for planted in (MAKER, MODEL, "Zyxwv", "Qqmodel"):
        assert planted not in text, f"{planted!r} in {where}"


def test_unknown_device_reason_names_the_device_key_not_its_values():
    keys = Keys(SECRET)
    engine = Engine(default_policy(), keys, pixel_stage=make_pixel_stage(parse_pixels_section(None), keys))
    with pytest.raises(Quarantine) as caught:
        process(planted_us(), engine)
    reason = caught.value.reason
    assert_clean(reason, "the reason")
    assert device_key(planted_us(), keys) in reason and "rules scaffold" in reason
    assert device_key(planted_us(), keys) != device_key(planted_us(), Keys(b"another-secret-0123456789abcdefgh"))


def test_codec_messages_quote_no_value():
    ds = planted_us()
    ds.PhotometricInterpretation = "DOE_JANE"  # valid CS, not a standard term
    with pytest.raises(PixelDecodeError) as caught:
        decode(ds)
    assert "DOE" not in str(caught.value) and "Photometric Interpretation" in str(caught.value)
    assert syntax_name(uid.UID("1.2.826.0.1.3680043.99.1")) == "an unrecognised transfer syntax"
    assert syntax_name(uid.RLELossless) == "RLE Lossless"


def test_through_the_node_audit_log_and_quarantine_commands_carry_neither_string(tmp_path, run_cli):
    (tmp_path / "in").mkdir()
    planted_us().save_as(tmp_path / "in" / "us.dcm", enforce_file_format=True)
    port = free_port()
    config = node_config(tmp_path, port, destinations=[{"name": "out", "type": "folder",
                                                        "path": str(tmp_path / "out")}])
    with running_node(config, port):
        assert storescu(port, tmp_path / "in").returncode == 0

        def held():
            states = json.loads(run_cli("status", "--json", "--config", config).stdout)["states"]
            return states["quarantined"] == 1

        wait_for(held, timeout=60, what="the ultrasound quarantined")
        listed = run_cli("quarantine", "list", "--config", config, check=True).stdout
        shown = run_cli("quarantine", "show", "1", "--config", config, check=True).stdout
        tailed = run_cli("tail", "--no-follow", "--config", config, check=True).stdout
    key = device_key(planted_us(), Keys(NODE_SECRET))
    assert key in listed and key in shown
    for text, where in ((listed, "quarantine list"), (shown, "quarantine show"), (tailed, "tail"),
                        ((tmp_path / "data" / "audit.log").read_text(), "audit.log"),
                        (config.with_suffix(".out").read_text(), "the node's output")):
        assert_clean(text, where)
    # the operator finds the device behind the key with the scaffold and the node's secret
    raw = next((tmp_path / "data").rglob("*.dcm"))
    assert pydicom.dcmread(raw).Manufacturer == MAKER
    scaffold = run_cli("rules", "scaffold", raw.parent, "--secret-file", tmp_path / "data" / "secret",
                       check=True).stdout
    assert f"# device key: {key}" in scaffold and MAKER in scaffold
