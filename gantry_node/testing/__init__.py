"""Valid synthetic DICOM instances for tests, benchmarks and demos.

    from gantry_node.testing import Study
    study = Study.for_patient(name="DOE^JANE^Q", patient_id="MRN12345", birth_date="19700214", sex="F") \\
                 .on("20240311").accession("ACC998877").described("CT CHEST W CONTRAST")
    ct = study.series("CT").ct_image(rows=512, columns=512, bits=16).build()
    cts = study.series("CT").ct_images(count=3)
    sr = study.series("SR").sr(referencing=cts).build()

Everything is deterministic: UIDs come from the study's seed, pixels from seeded numpy. Every
kind validates with dciodvfy without errors (tests/test_synthetic.py). The `with_*` methods of
an instance builder plant PHI in well-known places for de-identification tests.
"""

from gantry_node.testing.corpus import make_ct_corpus
from gantry_node.testing.instance import InstanceBuilder
from gantry_node.testing.study import Series, Study

__all__ = ["InstanceBuilder", "Series", "Study", "make_ct_corpus"]
