"""The pixel stage in the pipeline: unknown devices and OCR findings are held back, known
devices are redacted, images that cannot carry text are left alone, undecodable pixels fail
closed. The node-level test (an image with text is quarantined, not forwarded) can build on
`tests.support.pixels.text_image()`: a US image of a device no rule knows ("Acme Sonics",
"Model T"), with the patient's name, ID and birth date burned in at the top left."""

from __future__ import annotations

import pytest
from pydicom import uid

from gantry_node.engine.deid import Keys, default_policy
from gantry_node.engine.pipeline import Engine, Quarantine, process
from gantry_node.engine.pixels.codec import decode
from gantry_node.engine.pixels.config import parse_pixels_section
from gantry_node.engine.pixels.device import device_key
from gantry_node.engine.pixels.ocr import sample_frames
from gantry_node.engine.pixels.stage import make_pixel_stage
from tests.conftest import SECRET
from tests.support.pixels import encode_as, read_testdata, roundtrip, synthetic, text_image

TEXT_BOX = (10, 10, 150, 70)  # where text_image() writes its three lines
ACME_RULE = {"id": "acme-top-left", "name": "Acme Sonics Model T",
             "match": {"all": [{"tag": "Manufacturer", "equals": "Acme Sonics"},
                               {"tag": "ManufacturerModelName", "equals": "Model T"}]},
             "regions": [{"x": 0, "y": 0, "width": 200, "height": 80}]}


def engine_for(doc=None) -> Engine:
    return Engine(default_policy(), Keys(SECRET),
                  pixel_stage=make_pixel_stage(parse_pixels_section(doc), Keys(SECRET)))


def test_text_image_from_an_unknown_device_is_quarantined():
    with pytest.raises(Quarantine) as caught:
        process(text_image(), engine_for())
    assert caught.value.stage == "pixels"
    assert "no machine rule matches" in caught.value.reason
    # the device by its key (what `rules scaffold --secret-file` prints), never by its values
    assert device_key(text_image(), Keys(SECRET)) in caught.value.reason
    assert "Acme" not in caught.value.reason and "Model T" not in caught.value.reason


def test_unknown_device_left_to_ocr_is_quarantined_for_the_text_and_the_reason_has_no_phi():
    with pytest.raises(Quarantine) as caught:
        process(text_image(), engine_for({"unknown_device": "ocr"}))
    reason = caught.value.reason
    assert caught.value.stage == "pixels" and "OCR found" in reason
    assert "patient name part" in reason or "date" in reason
    assert "x=" in reason and "frame 0" in reason
    for phi in ("DOE", "JANE", "12345", "1970"):
        assert phi not in reason.upper()


def test_known_device_is_redacted_and_passes_the_ocr_gate():
    clean = process(text_image(), engine_for({"rules": [ACME_RULE]}))
    notes = clean.notes["pixels"]
    assert notes["rule"] == "acme-top-left" and notes["redacted"]
    assert notes["ocr"] == {"frames": [0], "words": notes["ocr"]["words"], "findings": 0}
    frames = decode(roundtrip(clean.dataset)).frames
    assert (frames[:, 0:80, 0:200] == frames.min()).all()


def test_rule_that_misses_the_text_is_caught_by_the_ocr_gate():
    wrong = dict(ACME_RULE, regions=[[400, 400, 100, 50]])
    with pytest.raises(Quarantine, match="OCR found"):
        process(text_image(), engine_for({"rules": [wrong]}))


def test_device_declared_clean_still_goes_through_the_ocr_gate():
    declared = dict(ACME_RULE, regions=[])
    with pytest.raises(Quarantine, match="OCR found"):
        process(text_image(), engine_for({"rules": [declared]}))


def test_ocr_can_be_switched_off_per_modality():
    clean = process(text_image(), engine_for({"rules": [dict(ACME_RULE, regions=[])],
                                              "ocr": {"enabled_modalities": ["SC"]}}))
    assert "ocr" not in clean.notes["pixels"]


def test_multiframe_cine_is_sampled_first_middle_last():
    assert sample_frames(1, 3) == [0]
    assert sample_frames(3, 3) == [0, 1, 2]
    assert sample_frames(10, 3) == [0, 4, 9]
    assert sample_frames(500, 5) == [0, 125, 250, 374, 499]
    # text only in the last frame of a 5-frame cine is still found
    with pytest.raises(Quarantine, match="frame 4"):
        process(text_image(frames=5, text_frames=(4,)), engine_for({"unknown_device": "ocr"}))


def test_image_that_cannot_carry_text_is_left_alone():
    ds = read_testdata("CT_small.dcm")
    pixel_bytes = ds.PixelData
    clean = process(ds, engine_for())
    assert clean.notes["pixels"] == {"rule": None, "suspect": []}
    assert clean.dataset.PixelData == pixel_bytes
    assert "BurnedInAnnotation" not in clean.dataset or clean.dataset.BurnedInAnnotation != "NO"


def test_burned_in_annotation_yes_makes_any_modality_suspect():
    ds = synthetic("MONOCHROME2", 8, modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2")
    with pytest.raises(Quarantine, match="BurnedInAnnotation=YES"):
        process(ds, engine_for())


def test_undecodable_pixels_are_quarantined_not_passed_through():
    ds = read_testdata("JPEG-lossy.dcm")
    rule = {"id": "mg", "match": {"tag": "Modality", "equals": ds.Modality}, "regions": [[0, 0, 10, 10]]}
    with pytest.raises(Quarantine) as caught:
        process(ds, engine_for({"rules": [rule]}))
    assert caught.value.stage == "pixels" and "cannot decode pixel data" in caught.value.reason


def test_compressed_text_image_is_redacted_and_recompressed(tmp_path):
    source = encode_as(text_image(frames=2), uid.JPEGLSLossless, tmp_path)
    clean = process(source, engine_for({"rules": [ACME_RULE]}))
    out = roundtrip(clean.dataset)
    assert out.file_meta.TransferSyntaxUID == uid.JPEGLSLossless
    assert clean.notes["pixels"]["frames_changed"] == 2


def test_rules_are_matched_on_the_original_not_the_deidentified_dataset():
    ds = text_image()
    ds.DeviceSerialNumber = "SN-77"  # removed by de-identification
    by_serial = {"id": "by-serial", "match": {"tag": "DeviceSerialNumber", "equals": "SN-77"},
                 "regions": [[0, 0, 200, 80]]}
    clean = process(ds, engine_for({"rules": [by_serial]}))
    assert clean.notes["pixels"]["rule"] == "by-serial"
    assert "DeviceSerialNumber" not in clean.dataset


def test_judging_ocr_text():
    from gantry_node.engine.deid import Identity
    from gantry_node.engine.pixels.ocr import Word, digit_reading, judge

    def line(*texts):
        return [Word(t, 90, 0, 10 + 60 * i, 5, 50, 12) for i, t in enumerate(texts)]

    who = Identity.of(synthetic())  # Doe^Jane, PID12345, born 1970-01-02
    assert [f.what for f in judge(line("DOE*JANE"), who)] == ["patient name part", "person name"]
    assert [f.what for f in judge(line("ID", "PIDl2345"), who)] == ["patient or order id"]
    assert [f.what for f in judge(line("24-MAY-O2"), None)] == ["date"]
    assert [f.what for f in judge(line("5/25/2011"), None)] == ["date"]
    assert [f.what for f in judge(line("11-05-25-142825"), None)] == ["date", "identifier"]
    assert [f.what for f in judge(line("MRN:", "778"), None)] == ["labelled identifier"]
    assert [f.what for f in judge(line("*WESTWAY", "MEDICAL*"), None)] == ["institution name"]
    # what an ultrasound leaves after redaction is not a finding
    for harmless in (("Gen", "OB", "C5-1", "28Hz"), ("TIS<0.4", "MI=0.8", "AO=100%"), ("127/128",),
                     ("3/3/4",), ("9123", "5.0", "R15", "G66"), ("3:PELVIS", "DVA:", "94%"), ("LYMPH", "NODE")):
        assert judge(line(*harmless), who) == [], harmless
    # a finding's box is the words it covers, in image coordinates
    (finding,) = judge(line("LYMPH", "5/25/2011"), None)
    assert finding.box == (70, 5, 50, 12)
    assert digit_reading("24-MAY-O2 Gen OB") == "24-MAY-02 Gen OB"
