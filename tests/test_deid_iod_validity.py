"""De-identification must not make an instance invalid: dciodvfy may report no error on the
output that it did not report on the input. And references between instances (SR evidence and
content, presentation state images) must point at the pseudonymous UIDs of the de-identified
images."""

from __future__ import annotations

from dataclasses import replace

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.sequence import Sequence

from gantry_node.engine.deid import OPTIONS, default_policy, deidentify
from gantry_node.io.part10 import write_instance
from gantry_node.testing import Study
from gantry_node.testing.documents import sop_reference
from tests.support.dciodvfy import dciodvfy_errors, needs_dciodvfy

pytestmark = needs_dciodvfy

POLICIES = {
    "default": default_policy(),
    # the Basic Profile with no option: every combined code (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) and
    # every date falls back on the attribute's type in the IOD
    "basic-only": default_policy().with_options(disable=OPTIONS),
}
# the strict removal of the Type 3 reference sequences, checked on the instance that has them
STRICT = {"references-removed": replace(default_policy(), references="remove")}



def new_study() -> Study:
    return (Study.for_patient(name="DOE^JANE^Q", patient_id="MRN12345", birth_date="19700214", sex="F")
            .on("20240311").accession("ACC998877").described("CT CHEST W CONTRAST").referred_by("WELBY^MARCUS"))


def synthetic(kind: str, phi: bool):
    study = new_study()
    images = study.series("CT").ct_images(2, rows=64, columns=64)
    builder = {
        "CT": lambda: study.series("CT").ct_image(rows=128, columns=128),
        "CT-referencing": lambda: study.series("CT").ct_image(rows=64, columns=64),
        "CT-implicit": lambda: study.series("CT").ct_image(rows=64, columns=64).implicit(),
        "MR": lambda: study.series("MR").mr_image(rows=128, columns=128),
        "SC": lambda: study.series("OT").sc_image(rgb=False),
        "SC-RGB": lambda: study.series("OT").sc_image(rgb=True),
        "US": lambda: study.series("US").us_image(rows=240, columns=320),
        "multiframe": lambda: study.series("OT").multiframe_image(frames=3, rows=64, columns=64),
        "SR": lambda: study.series("SR").sr(referencing=images),
        "PR": lambda: study.series("PR").presentation_state(referencing=images),
    }[kind]()
    if phi:
        builder.with_all_phi().with_curve()
    ds = builder.build()
    if kind == "CT-referencing":  # Type 3 references, kept (with new UIDs) under references: keep
        ds.ReferencedImageSequence = Sequence([sop_reference(images[0])])
        ds.SourceImageSequence = Sequence([sop_reference(images[1])])
    return ds


def assert_no_new_errors(ds, policy_name, keys, tmp_path) -> None:
    source = tmp_path / "in.dcm"
    ds.save_as(source, enforce_file_format=True)
    result = deidentify(ds, {**POLICIES, **STRICT}[policy_name], keys)
    output = write_instance(result.dataset, tmp_path / "out.dcm")
    before, after = dciodvfy_errors(source), dciodvfy_errors(output)
    assert after - before == set(), f"de-identification added dciodvfy errors: {sorted(after - before)}"


def cases():
    for kind in ("CT", "CT-referencing", "CT-implicit", "MR", "SC", "SC-RGB", "US", "multiframe", "SR", "PR"):
        for phi in (False, True):
            for policy_name in [*POLICIES, *(STRICT if kind == "CT-referencing" else ())]:
                yield pytest.param(kind, phi, policy_name,
                                   id=f"{kind}-{'phi' if phi else 'plain'}-{policy_name}")


@pytest.mark.parametrize(("kind", "phi", "policy_name"), list(cases()))
def test_synthetic_instance_stays_valid(kind, phi, policy_name, keys, tmp_path):
    assert_no_new_errors(synthetic(kind, phi), policy_name, keys, tmp_path)


def test_the_check_sees_an_invalid_output(tmp_path):
    """dciodvfy_errors finds what a broken de-identifier would do, and ignores the values."""
    ds = synthetic("CT", phi=False)
    ds.save_as(tmp_path / "in.dcm", enforce_file_format=True)
    del ds.PatientName  # Type 2: must stay present
    del ds.Rows  # Type 1
    with pytest.warns(UserWarning, match="exceeds the maximum length"):
        ds.StationName = "A-NAME-LONGER-THAN-16"
    ds.save_as(tmp_path / "out.dcm", enforce_file_format=True)
    new = dciodvfy_errors(tmp_path / "out.dcm") - dciodvfy_errors(tmp_path / "in.dcm")
    assert "Error - Missing attribute Type 2 Required Element=<PatientName> Module=<Patient>" in new
    assert any("Element=<Rows>" in e for e in new)
    assert any("Station Name" in e and "LONGER" not in e for e in new)


SAMPLE_FILES = ["CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "emri_small.dcm", "US1_UNCR.dcm"]


@pytest.mark.parametrize("policy_name", POLICIES)
@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_sample_file_stays_valid(name, policy_name, keys, tmp_path):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not available offline")
    assert_no_new_errors(pydicom.dcmread(path), policy_name, keys, tmp_path)


def refs(items) -> set[tuple[str, str]]:
    return {(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID)) for i in items}


@pytest.mark.parametrize("policy_name", POLICIES)
def test_references_point_at_the_pseudonymous_images(policy_name, keys):
    policy = POLICIES[policy_name]
    study = new_study()
    images = study.series("CT").ct_images(3, rows=32, columns=32)
    sr = study.series("SR").sr(referencing=images).with_all_phi().build()
    pr = study.series("PR").presentation_state(referencing=images).build()

    clean_images = [deidentify(image, policy, keys).dataset for image in images]
    clean_sr = deidentify(sr, policy, keys).dataset
    clean_pr = deidentify(pr, policy, keys).dataset
    wanted = {(str(i.SOPClassUID), str(i.SOPInstanceUID)) for i in clean_images}
    assert wanted.isdisjoint({(str(i.SOPClassUID), str(i.SOPInstanceUID)) for i in images})
    series_uid = clean_images[0].SeriesInstanceUID
    assert series_uid != images[0].SeriesInstanceUID

    evidence = clean_sr.CurrentRequestedProcedureEvidenceSequence
    assert [e.StudyInstanceUID for e in evidence] == [clean_images[0].StudyInstanceUID]
    assert [s.SeriesInstanceUID for s in evidence[0].ReferencedSeriesSequence] == [series_uid]
    assert refs(evidence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence) == wanted
    image_items = [i for i in clean_sr.ContentSequence if i.ValueType == "IMAGE"]
    assert refs(i.ReferencedSOPSequence[0] for i in image_items) == wanted

    assert [s.SeriesInstanceUID for s in clean_pr.ReferencedSeriesSequence] == [series_uid]
    assert refs(clean_pr.ReferencedSeriesSequence[0].ReferencedImageSequence) == wanted
    assert clean_sr.StudyInstanceUID == clean_pr.StudyInstanceUID == clean_images[0].StudyInstanceUID
