"""An instance with values pydicom warns about: UIDs holding surnames (as a badly written
anonymiser or a hand-edited file leaves them) and a text too long for its VR. pydicom's
warnings quote such values; none of the front doors may show them, and each must name the tags."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from tests.support.node import make_ct

SURNAMES = ("KOWALCZYK", "NOWAKOWSKA")
# SOP Instance UID (and the file meta's copy of it): decoded while the file is read strictly;
# Frame of Reference UID: decoded while it is de-identified. All are replaced in the output.
BAD_UIDS = {0x00080018: f"1.2.826.0.1.3680043.8.498.{SURNAMES[0]}",
            0x00200052: f"1.2.826.0.1.3680043.8.498.77.{SURNAMES[1]}"}
LONG_MODEL = "Scanner in room two of the east wing " * 2  # LO allows 64 characters
PROBLEM_TAGS = ("(0002,0003) MediaStorageSOPInstanceUID: invalid value for VR UI",
                "(0008,0018) SOPInstanceUID: invalid value for VR UI",
                "(0020,0052) FrameOfReferenceUID: invalid value for VR UI",
                "(0008,1090) ManufacturerModelName: value too long for VR LO (74 > 64 characters)")


def write_invalid_instance(folder: Path, name: str = "scan.dcm") -> Path:
    ds = make_ct(generate_uid(), generate_uid(), generate_uid(), 1)
    for tag, uid in BAD_UIDS.items():
        ds[tag] = RawDataElement(Tag(tag), "UI", len(uid), uid.encode(), 0, False, True)
    model = LONG_MODEL.encode()
    ds[0x00081090] = RawDataElement(Tag(0x00081090), "LO", len(model), model, 0, False, True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    logger = logging.getLogger("pydicom")
    logger.disabled = True  # pydicom warns (and logs) when it copies the UID into the file meta
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(path, enforce_file_format=True)
    finally:
        logger.disabled = False
    return path


def assert_no_surname(blobs: list[str | bytes], where: str) -> None:
    for blob in blobs:
        for name in SURNAMES:
            needle = name if isinstance(blob, str) else name.encode()
            assert needle not in blob, f"the surname {name!r} from a UID is in {where}"
