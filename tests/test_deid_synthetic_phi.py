"""Planted PHI (tests/synthetic: every place the builder can put it) does not survive
de-identification under the default policy, the bare Basic Profile, or the clean options; and
what is not PHI (the coded concepts of an SR) survives."""

from __future__ import annotations

import pytest

from gantry_node.engine.deid import OPTIONS, default_policy, deidentify, verify
from gantry_node.io.part10 import encode_instance
from gantry_node.testing import Study

PATIENT_NEEDLES = [b"DOE", b"JANE", b"MRN12345", b"19700214", b"ACC998877", b"OLDMRN0042",
                   b"WELBY", b"HOUSE", b"RADTECH"]

POLICIES = {
    "default": default_policy(),
    "basic-only": default_policy().with_options(disable=OPTIONS),
    "clean-options": default_policy().with_options("clean_descriptors", "clean_structured_content", "clean_graphics"),
}



def new_study() -> Study:
    return (Study.for_patient(name="DOE^JANE^Q", patient_id="MRN12345", birth_date="19700214", sex="F")
            .on("20240311").accession("ACC998877").described("CT CHEST W CONTRAST").referred_by("WELBY^MARCUS"))


def instance(kind: str):
    study = new_study()
    images = study.series("CT").ct_images(2, rows=32, columns=32)
    builder = {
        "CT": lambda: study.series("CT").ct_image(rows=64, columns=64),
        "CT-implicit": lambda: study.series("CT").ct_image(rows=64, columns=64).implicit(),
        "US": lambda: study.series("US").us_image(rows=64, columns=64),
        "multiframe": lambda: study.series("OT").multiframe_image(frames=2, rows=32, columns=32),
        "SR": lambda: study.series("SR").sr(referencing=images),
        "PR": lambda: study.series("PR").presentation_state(referencing=images),
    }[kind]()
    return builder.with_all_phi().with_curve().build()


def cases():
    for kind in ("CT", "CT-implicit", "US", "multiframe", "SR", "PR"):
        for name in POLICIES:
            yield pytest.param(kind, name, id=f"{kind}-{name}")


@pytest.mark.parametrize(("kind", "policy_name"), list(cases()))
def test_planted_phi_is_gone(kind, policy_name, keys):
    policy = POLICIES[policy_name]
    result = deidentify(instance(kind), policy, keys)
    data = encode_instance(result.dataset)
    left = [n.decode() for n in PATIENT_NEEDLES if n in data]
    assert left == [], f"planted values survived: {left}"
    assert verify(result.dataset, policy, result.identity) == []


def concepts(sr) -> list[tuple[str, str, str]]:
    return [(i.ValueType, i.ConceptNameCodeSequence[0].CodeValue, i.ConceptNameCodeSequence[0].CodingSchemeDesignator)
            for i in sr.ContentSequence]


def test_sr_concept_codes_are_not_phi_and_survive(keys):
    """Only the free text of a D Content Sequence needs a dummy; the coded concepts carry no identity,
    and replacing them (e.g. CodingSchemeDesignator 'ANONYMIZED') would destroy the report."""
    sr = instance("SR")
    clean = deidentify(sr, default_policy(), keys).dataset
    assert concepts(clean) == concepts(sr)
    assert [i.RelationshipType for i in clean.ContentSequence] == [i.RelationshipType for i in sr.ContentSequence]
    assert all("JANE" not in str(i.get("TextValue", "")) for i in clean.ContentSequence)
