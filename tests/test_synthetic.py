"""The synthetic builder: every kind is a valid instance (dciodvfy, no errors), deterministic,
and carries the PHI it was asked to plant."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gantry_node.io.part10 import read_instance
from gantry_node.testing import Study, make_ct_corpus
from gantry_node.testing.phi import SAFE_PRIVATE_CREATOR, UNSAFE_PRIVATE_CREATOR
from tests.support.dciodvfy import dciodvfy_errors, needs_dciodvfy


def new_study() -> Study:
    return (Study.for_patient(name="DOE^JANE^Q", patient_id="MRN12345", birth_date="19700214", sex="F")
            .on("20240311").accession("ACC998877").described("CT CHEST W CONTRAST"))


def build(kind: str, phi: bool):
    study = new_study()
    makers = {
        "ct": lambda: study.series("CT").ct_image(rows=128, columns=128),
        "ct-implicit": lambda: study.series("CT").ct_image(rows=64, columns=64).implicit(),
        "mr": lambda: study.series("MR").mr_image(),
        "sc-gray": lambda: study.series("OT").sc_image(),
        "sc-rgb": lambda: study.series("OT").sc_image(rgb=True),
        "us": lambda: study.series("US").us_image(),
        "multiframe": lambda: study.series("OT").multiframe_image(frames=3),
        "sr": lambda: study.series("SR").sr(referencing=study.series("CT").ct_images(2, rows=32, columns=32)),
        "pr": lambda: study.series("PR").presentation_state(
            referencing=study.series("CT").ct_images(2, rows=32, columns=32)),
    }
    builder = makers[kind]()
    if phi:
        builder.with_all_phi().with_curve()
    return builder.build()


KINDS = ["ct", "ct-implicit", "mr", "sc-gray", "sc-rgb", "us", "multiframe", "sr", "pr"]


@needs_dciodvfy
@pytest.mark.parametrize("phi", [False, True], ids=["plain", "with-phi"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_a_valid_instance(kind, phi, tmp_path):
    path = tmp_path / f"{kind}.dcm"
    build(kind, phi).save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == set()
    read_instance(path)  # and our own strict reader accepts it


@pytest.mark.parametrize("kind", KINDS)
def test_builds_are_deterministic(kind):
    a, b = build(kind, True), build(kind, True)
    assert a.SOPInstanceUID == b.SOPInstanceUID
    assert a == b


def test_a_different_seed_gives_different_uids():
    a = new_study().series("CT").ct_image(rows=16, columns=16).build()
    other = Study.for_patient("DOE^JANE^Q", "MRN12345", seed="other").accession("ACC998877")
    b = other.series("CT").ct_image(rows=16, columns=16).build()
    assert a.StudyInstanceUID != b.StudyInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID


def test_ct_images_share_study_and_series_at_consecutive_positions():
    cts = new_study().series("CT").ct_images(count=3, rows=64, columns=64)
    assert len({c.SeriesInstanceUID for c in cts}) == 1 and len({c.StudyInstanceUID for c in cts}) == 1
    assert len({c.SOPInstanceUID for c in cts}) == 3
    z = [float(c.ImagePositionPatient[2]) for c in cts]
    assert np.allclose(np.diff(z), -2.5)
    assert [c.InstanceNumber for c in cts] == [1, 2, 3]


def test_ct_pixels_decode_to_sensible_hounsfield_units():
    ct = new_study().series("CT").ct_image(rows=512, columns=512, bits=16).build()
    assert ct.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    hu = ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    assert hu.shape == (512, 512)
    assert hu.min() < -900 and 0 < np.median(hu[200:300, 200:300]) < 100 and hu.max() > 600


def test_implicit_is_written_implicit(tmp_path):
    path = new_study().series("CT").ct_image(rows=16, columns=16).implicit().save(tmp_path / "i.dcm")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian and ds.original_encoding == (True, True)


def test_planted_phi_is_where_tests_expect_it():
    ds = build("ct", True)
    assert ds.InstitutionName and ds.StationName and ds.DeviceSerialNumber and ds.OperatorsName
    assert "JANE" in ds.ImageComments and ds.OtherPatientIDsSequence[0].PatientID
    assert str(ds.PerformingPhysicianName) and str(ds.ReferringPhysicianName)
    safe = ds.private_block(0x0019, SAFE_PRIVATE_CREATOR)
    assert safe[0x23].VR == "DS" and safe[0x10].value == "DOE^JANE^Q"
    assert ds.private_block(0x0029, UNSAFE_PRIVATE_CREATOR)[0x10].value == "DOE^JANE^Q"
    assert (0x6000, 0x3000) in ds and "JANE" in ds[0x6000, 0x1500].value
    assert (0x5000, 0x3000) in ds and "JANE" in ds[0x5000, 0x0022].value
    context = ds.RequestAttributesSequence[0].ScheduledProtocolCodeSequence[0].ProtocolContextSequence
    assert context[0].PersonName == "DOE^JANE^Q" and context[1].Date == "19700214"
    assert ds.StudyInstanceUID == context[2].UID


def test_sr_and_pr_reference_the_given_images():
    study = new_study()
    cts = study.series("CT").ct_images(2, rows=16, columns=16)
    wanted = {(c.SOPClassUID, c.SOPInstanceUID) for c in cts}
    sr = study.series("SR").sr(referencing=cts).with_comments().build()
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == cts[0].StudyInstanceUID
    refs = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert {(r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID) for r in refs} == wanted
    images = [i.ReferencedSOPSequence[0] for i in sr.ContentSequence if i.ValueType == "IMAGE"]
    assert {(r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID) for r in images} == wanted
    assert any("JANE" in i.get("TextValue", "") for i in sr.ContentSequence)
    pr = study.series("PR").presentation_state(referencing=cts).build()
    series = pr.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == cts[0].SeriesInstanceUID
    assert {(r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID) for r in series.ReferencedImageSequence} == wanted


def test_multiframe_and_us_pixels():
    study = new_study()
    mf = study.series("OT").multiframe_image(frames=3, rows=32, columns=48).build()
    assert mf.pixel_array.shape == (3, 32, 48)
    us = study.series("US").us_image(rows=120, columns=160).build()
    assert us.BurnedInAnnotation == "YES" and us.pixel_array.shape == (120, 160, 3)


def test_make_ct_corpus_writes_readable_files(tmp_path):
    paths = make_ct_corpus(5, tmp_path, patients=2, rows=64, columns=64)
    assert len(paths) == 5
    datasets = [read_instance(p) for p in paths]
    assert len({d.PatientID for d in datasets}) == 2
    assert len({d.SOPInstanceUID for d in datasets}) == 5
    assert all(d.Rows == 64 and d.BitsAllocated == 16 for d in datasets)


def test_given_uids_attributes_and_private_elements(tmp_path):
    study = new_study().with_uid("1.2.826.0.1.3680043.8.498.1")
    series = study.series("CT").with_uid("1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3")
    ds = (series.ct_image(rows=32, columns=32, bits=12).with_uid("1.2.826.0.1.3680043.8.498.4")
          .with_attributes(Manufacturer="ACME", StudyID="S1").with_private(0x0029, "ACME_PHI_1", 0x10, "LO", "copy")
          .build())
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID, ds.SOPInstanceUID,
            ds.file_meta.MediaStorageSOPInstanceUID) == (
        "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3",
        "1.2.826.0.1.3680043.8.498.4", "1.2.826.0.1.3680043.8.498.4")
    assert (ds.Manufacturer, ds.StudyID, ds.BitsStored) == ("ACME", "S1", 12)
    assert ds.private_block(0x0029, "ACME_PHI_1")[0x10].value == "copy"


@pytest.mark.parametrize("kind", ["us", "ct"])
def test_burned_in_text_lands_in_the_pixels(kind):
    def image():
        series = new_study().series(kind.upper())
        return series.us_image(rows=120, columns=200) if kind == "us" else series.ct_image(rows=120, columns=200)

    before, after = image().build().pixel_array, image().with_burned_in_text(["DOE^JANE"], 10, 10).build()
    changed = np.argwhere(before != after.pixel_array)
    assert len(changed) > 20 and changed[:, 0].max() < 40 and changed[:, 1].max() < 120  # only where the text is
    assert after.pixel_array.max() == (1 << after.BitsStored) - 1
