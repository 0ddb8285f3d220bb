"""gantry_node.engine.library_warnings: pydicom's warnings as problems by tag and kind, never the value."""

from __future__ import annotations

import logging
import warnings

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from gantry_node.engine.library_warnings import Problem, instance_problems, kind_of
from tests.support.datasets import item, minimal, seq

SECRET_WORD = "WISNIEWSKI"  # planted in every bad value


def _raw(ds, tag: int, vr: str, value: str) -> None:
    data = value.encode("latin-1")
    ds[tag] = RawDataElement(Tag(tag), vr, len(data), data, 0, False, True)


def _save(ds, path):
    logger = logging.getLogger("pydicom")
    logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(path, enforce_file_format=True)
    finally:
        logger.disabled = False
    return path


def _read_everything(path):
    ds = pydicom.dcmread(path)
    for elem in ds.iterall():
        _ = elem.value
    return ds


def test_each_kind_is_tied_to_its_element_and_the_value_is_withheld(tmp_path, caplog):
    ds = minimal()
    ds.ReferencedImageSequence = seq(item(ReferencedSOPClassUID="1.2.840.10008.5.1.4.1.1.2"))
    _raw(ds.ReferencedImageSequence[0], 0x00081155, "UI", f"1.2.3.{SECRET_WORD}")
    _raw(ds, 0x00081070, "PN", f"{SECRET_WORD}^" + "x" * 70)  # Operators' Name: a component > 64
    _raw(ds, 0x00200011, "IS", f"1{SECRET_WORD}")  # Series Number
    _raw(ds, 0x00081030, "LO", SECRET_WORD * 8)  # Study Description
    path = _save(ds, tmp_path / "bad.dcm")
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with instance_problems(path) as problems:
            _read_everything(path)
    assert [str(p) for p in problems] == [
        "(0008,1030) StudyDescription: value too long for VR LO (80 > 64 characters) (value withheld)",
        "(0008,1070) OperatorsName: person name component too long (81 > 64 characters) (value withheld)",
        "(0008,1140)[0].(0008,1155) ReferencedSOPInstanceUID: invalid value for VR UI (value withheld)",
        "(0020,0011) SeriesNumber: invalid value for VR IS (value withheld)",
    ]
    assert not shown  # recorded, not shown
    assert SECRET_WORD not in caplog.text  # nor passed on to the application's logging


def test_a_clean_instance_has_no_problems(tmp_path):
    path = _save(minimal(), tmp_path / "ok.dcm")
    with instance_problems(path) as problems:
        _read_everything(path)
    assert problems == []


def test_without_a_file_the_tag_is_unknown_but_the_kind_is_kept():
    ds = minimal()
    _raw(ds, 0x00200052, "UI", f"1.2.3.{SECRET_WORD}")
    with instance_problems(None) as problems:
        _ = ds.FrameOfReferenceUID
    assert problems == [Problem("", "", "invalid value for VR UI")]
    assert str(problems[0]) == "(element not known): invalid value for VR UI (value withheld)"


def test_problems_are_filled_when_the_block_raises(tmp_path):
    ds = minimal()
    _raw(ds, 0x00200052, "UI", f"1.2.3.{SECRET_WORD}")
    path = _save(ds, tmp_path / "bad.dcm")
    with pytest.raises(RuntimeError), instance_problems(path) as problems:
        _ = pydicom.dcmread(path).FrameOfReferenceUID
        raise RuntimeError("quarantined")
    assert [p.tag for p in problems] == ["(0020,0052)"]


def test_other_warnings_are_shown_as_usual():
    with pytest.warns(DeprecationWarning, match="not a DICOM problem"), instance_problems(None) as problems:
        warnings.warn("not a DICOM problem", DeprecationWarning, stacklevel=1)
    assert problems == []


def test_an_unknown_message_is_withheld_whole():
    assert kind_of(f"Something new about '{SECRET_WORD}'") == "UserWarning from the DICOM library (message withheld)"
    assert kind_of(f"Unknown encoding '{SECRET_WORD}' - using default encoding instead") == \
        "invalid Specific Character Set"
