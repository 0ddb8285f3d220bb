"""Implicit VR input, as many PACS send it: the VR comes from a dictionary, and real devices write
private elements that do not fit their private dictionary's VR. Such a private element is read as
UN bytes (it is removed, or sealed, but never decoded with the wrong VR); a public one is bad input
naming the tag; and no failure anywhere in the read path is a bare exception name."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from gantry_node.engine.deid import Keys, default_policy
from gantry_node.engine.encoding import encode_dataset
from gantry_node.engine.pipeline import Engine, process
from gantry_node.engine.pixels.config import parse_pixels_section
from gantry_node.engine.pixels.stage import make_pixel_stage
from gantry_node.engine.seal import make_sealer, recover
from gantry_node.io.part10 import BadInput, read_instance
from tests.conftest import SECRET
from tests.support.node import make_ct
from tests.support.seal import recipient

deid_data = pytest.importorskip("deid_data", reason="deid-data is part of the test extra")
S2000 = Path(deid_data.__file__).parent / "data" / "ultrasounds" / "RGB_IMAGE.dcm"
SIEMENS_US = "SIEMENS MED SMS USG S2000"  # (0019,1021) is FD in pydicom's private dictionary


def implicit(tmp_path: Path, ds: pydicom.Dataset, name: str = "implicit.dcm") -> Path:
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


def ct_with(*elements: tuple[int, str, object]) -> pydicom.Dataset:
    ds = make_ct(generate_uid(), generate_uid(), generate_uid(), 1, size=16)
    for tag, vr, value in elements:
        ds.add_new(tag, vr, value)
    return ds


def test_the_s2000_ultrasound_in_implicit_vr_is_redacted_by_its_machine_rule(tmp_path):
    """deid-data's Siemens S2000 ultrasound converted by dcmtk to Implicit VR Little Endian: its
    2-byte (0019,1021) is FD (8 bytes) in pydicom's private dictionary."""
    path = tmp_path / "s2000-implicit.dcm"
    subprocess.run(["dcmconv", "+ti", str(S2000), str(path)], check=True, capture_output=True, timeout=60)
    original = read_instance(path)
    assert original.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert original[0x00191021].VR == "UN" and len(original[0x00191021].value) == 2
    raw_bytes = original[0x00191021].value
    broker = recipient()
    engine = Engine(default_policy(), Keys(SECRET), sealer=make_sealer([broker.cert]),
                    pixel_stage=make_pixel_stage(parse_pixels_section(None)))
    clean = process(original, engine)  # Quarantine would raise
    pixels = clean.notes["pixels"]
    assert pixels["rule"] == "ctp-034" and pixels["redacted"]  # rules/pixel_rules_ctp.yaml: US / Siemens S2000
    assert 0x00191021 not in clean.dataset
    back = recover(pydicom.dcmread(pydicom.filebase.DicomBytesIO(bytes(clean.encoded))), broker.key).dataset
    assert back[0x00191021].value == raw_bytes  # sealed as the bytes it was


def test_a_mis_sized_private_element_is_read_as_un_and_removed(tmp_path):
    path = implicit(tmp_path, ct_with((0x00190010, "LO", SIEMENS_US), (0x00191021, "OB", b"<\x00")))
    ds = read_instance(path)
    assert ds[0x00191021].VR == "UN" and ds[0x00191021].value == b"<\x00"
    clean = process(ds, Engine(default_policy(), Keys(SECRET)))
    assert 0x00191021 not in clean.dataset


def test_a_safe_private_element_that_does_not_fit_its_listed_vr_is_removed(tmp_path):
    """Table E.3.10-1 lists (0045,xx02) GEMS_HELIOS_01 as FL; 2 bytes are not that element."""
    path = implicit(tmp_path, ct_with((0x00450010, "LO", "GEMS_HELIOS_01"), (0x00451002, "OB", b"\x01\x02"),
                                      (0x00451001, "OB", b"\x10\x00")))  # SS, 2 bytes: fits, kept
    ds = read_instance(path)
    clean = process(ds, Engine(default_policy().with_options("retain_safe_private"), Keys(SECRET)))
    assert 0x00451002 not in clean.dataset
    assert clean.dataset[0x00451001].VR == "SS" and clean.dataset[0x00451001].value == 16
    assert any(c.tag == 0x00451002 and "does not fit" in c.reason for c in clean.changes)


def test_a_mis_sized_public_element_in_implicit_vr_is_bad_input_naming_the_tag(tmp_path):
    path = implicit(tmp_path, ct_with((0x00189087, "OB", b"\x00\x00\x80\x3f")))  # Diffusion b-value: FD
    with pytest.raises(BadInput, match=r"\(0018,9087\): FD value of 4 bytes is not a multiple of 8"):
        read_instance(path)


def test_a_foreign_exception_while_checking_names_the_tag(tmp_path, monkeypatch):
    """Whatever pydicom raises while an element is looked at, the reason names that element."""
    from pydicom.hooks import hooks

    path = implicit(tmp_path, ct_with((0x00081030, "LO", "study")))
    default = hooks.raw_element_vr

    def failing(raw, data, **kwargs):
        if raw.tag == 0x00081030:
            raise struct.error("a foreign failure")
        return default(raw, data, **kwargs)

    monkeypatch.setattr(hooks, "raw_element_vr", failing)
    with pytest.raises(BadInput, match=r"\(0008,1030\): cannot be read \(error\)"):
        read_instance(path)


def test_a_foreign_exception_while_parsing_names_the_tag(tmp_path, monkeypatch):
    """pydicom parses a sequence of undefined length while reading the file; a failure there that
    is not one of the exceptions pydicom usually raises is still bad input naming the sequence."""
    import pydicom.filereader as filereader

    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = generate_uid()
    ds = ct_with()
    ds.ReferencedImageSequence = pydicom.Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    path = implicit(tmp_path, ds)

    def failing(*args, **kwargs):
        raise struct.error("a foreign failure")

    monkeypatch.setattr(filereader, "read_sequence", failing)
    with pytest.raises(BadInput, match=r"\(0008,1140\): cannot parse: error"):
        read_instance(path)


def test_the_clean_copy_of_an_implicit_instance_reads_back(tmp_path):
    """The UN element never reaches the output; the output is a readable instance."""
    path = implicit(tmp_path, ct_with((0x00190010, "LO", SIEMENS_US), (0x00191021, "OB", b"<\x00")))
    clean = process(read_instance(path), Engine(default_policy(), Keys(SECRET)))
    out = tmp_path / "clean.dcm"
    out.write_bytes(encode_dataset(clean.dataset))
    assert read_instance(out).SOPInstanceUID == clean.dataset.SOPInstanceUID
