"""Real ultrasounds with burned-in text (pydicom and pydicom-data test files), through the
pipeline with the shipped rules plus rules for the devices the library lacks: tesseract finds
the identifying strings before, none of them after, and every pixel outside the regions is
what the source decoded to."""

from __future__ import annotations

import numpy as np
import pytest

from gantry_node.engine.pipeline import Engine, process
from gantry_node.engine.pixels.codec import decode
from gantry_node.engine.pixels.config import parse_pixels_section
from gantry_node.engine.pixels.stage import make_pixel_stage
from tests.support.pixels import ocr_text, read_testdata, roundtrip

# Devices the CTP library has no rule for, mapped by looking at the images (rendered to PNG).
SITE_RULES = [
    {"id": "site-logiq700-480", "name": "GE LOGIQ 700 640x480",
     "match": {"all": [{"tag": "ManufacturerModelName", "equals": "LOGIQ 700"}, {"tag": "Rows", "eq": 480}]},
     "regions": [[0, 0, 640, 110]]},
    {"id": "site-logiq700-240", "name": "GE LOGIQ 700 320x240 (downscaled export)",
     "match": {"all": [{"tag": "ManufacturerModelName", "equals": "LOGIQ 700"}, {"tag": "Rows", "eq": 240}]},
     "regions": [[0, 0, 320, 55]]},
    {"id": "site-aloka-ssd4000", "name": "ALOKA SSD-4000 640x480",
     "match": {"all": [{"tag": "Manufacturer", "startswith": "ALOKA"},
                       {"tag": "ManufacturerModelName", "equals": "SSD-4000"}]},
     "regions": [[0, 0, 640, 26]]},
    {"id": "site-cx50-350", "name": "Philips CX50 800x350",
     "match": {"all": [{"tag": "ManufacturerModelName", "contains": "CX50", "ignore_case": True},
                       {"tag": "Rows", "eq": 350}]},
     "regions": [[0, 0, 800, 59]]},
]
US1 = ["BAPTIST", "MSCSKEL"]      # institution and preset lines of the GE header
OB = ["142825", "5/25/2011"]      # the patient ID and the exam date in the Philips banner
ALOKA = ["WESTWA", "ULTRASOUND"]  # the institution line of the ALOKA banner
CASES = [
    ("US1_UNCR.dcm", "site-logiq700-480", US1),
    ("US1_UNCI.dcm", "site-logiq700-480", US1),
    ("US1_J2KR.dcm", "site-logiq700-480", US1),
    ("US1_J2KI.dcm", "site-logiq700-480", US1),
    ("examples_jpeg2k.dcm", "site-logiq700-480", US1),
    ("examples_rgb_color.dcm", "site-logiq700-240", ["BAPTIST"]),
    ("examples_palette.dcm", "site-cx50-350", OB),
    ("OBXXXX1A.dcm", "ctp-026", OB),  # the shipped CTP rule for the Philips CX50, 600 rows
    ("OBXXXX1A_expb.dcm", "ctp-026", OB),
    ("OBXXXX1A_rle.dcm", "ctp-026", OB),
    ("OBXXXX1A_2frame.dcm", "ctp-026", OB),
    ("OBXXXX1A_expb_2frame.dcm", "ctp-026", OB),
    ("OBXXXX1A_rle_2frame.dcm", "ctp-026", OB),
    ("gdcm-US-ALOKA-16.dcm", "site-aloka-ssd4000", ALOKA),
    ("gdcm-US-ALOKA-16_big.dcm", "site-aloka-ssd4000", ALOKA),
]


@pytest.fixture(scope="module")
def engine():
    from gantry_node.engine.deid import Keys, default_policy
    from tests.conftest import SECRET

    config = parse_pixels_section({"rules": SITE_RULES})
    return Engine(default_policy(), Keys(SECRET), pixel_stage=make_pixel_stage(config))


@pytest.mark.parametrize(("name", "rule_id", "strings"), CASES, ids=[c[0] for c in CASES])
def test_real_ultrasound_is_redacted(engine, name, rule_id, strings):
    original = read_testdata(name)
    source = decode(original).frames
    before = ocr_text(original).upper()
    missing = [s for s in strings if s.upper() not in before]
    assert not missing, f"tesseract should read {missing} in the original {name} (else this test proves nothing)"

    clean = process(read_testdata(name), engine)
    notes = clean.notes["pixels"]
    assert notes["rule"] == rule_id
    assert notes["redacted"] and notes["frames_changed"] == source.shape[0]
    assert notes["ocr"]["findings"] == 0

    out = roundtrip(clean.dataset)
    after = ocr_text(out).upper()
    leaked = [s for s in strings if s.upper() in after]
    assert not leaked, f"{name}: {leaked} still readable after redaction"

    result = decode(out).frames
    inside = np.zeros(source.shape[:3], dtype=bool)
    for x, y, w, h in notes["regions"]:
        inside[:, y:y + h, x:x + w] = True
    assert np.array_equal(result[~inside], source[~inside]), "pixels outside the regions changed"
    assert out.BurnedInAnnotation == "NO"
    assert "113101" in [item.CodeValue for item in out.DeidentificationMethodCodeSequence]


def test_real_ultrasound_without_a_rule_is_held_back(engine):
    from gantry_node.engine.pipeline import Quarantine

    default_only = Engine(engine.policy, engine.keys, pixel_stage=make_pixel_stage(parse_pixels_section(None)))
    with pytest.raises(Quarantine) as caught:
        process(read_testdata("US1_UNCR.dcm"), default_only)
    assert caught.value.stage == "pixels"
    assert "no machine rule matches" in caught.value.reason


@pytest.mark.parametrize("name", ["US1_UNCR.dcm", "examples_rgb_color.dcm", "examples_palette.dcm",
                                  "OBXXXX1A_rle_2frame.dcm", "gdcm-US-ALOKA-16.dcm"])
def test_ocr_gate_alone_catches_the_unredacted_real_images(engine, name):
    """With no rules at all and unknown devices left to OCR, the gate itself holds back every
    one of these images (institution names, the patient ID, dates)."""
    from gantry_node.engine.pipeline import Quarantine

    ocr_only = parse_pixels_section({"include_library": False, "unknown_device": "ocr"})
    gate = Engine(engine.policy, engine.keys, pixel_stage=make_pixel_stage(ocr_only))
    with pytest.raises(Quarantine) as caught:
        process(read_testdata(name), gate)
    assert caught.value.stage == "pixels" and "OCR found text resembling" in caught.value.reason
