"""One synthetic instance: the modules every composite IOD shares, the PHI a test may plant,
and the file meta. The kind-specific modules live in images.py and documents.py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gantry_node.testing import phi

if TYPE_CHECKING:
    from gantry_node.testing.study import Series


class InstanceBuilder:
    """Builds one instance of `kind`. `with_*` methods plant PHI; `build()` returns the dataset."""

    def __init__(self, series: Series, kind: str, number: int, params: dict) -> None:
        self.series = series
        self.study = series.study
        self.kind = kind
        self.number = number
        self.params = params
        self.transfer_syntax = ExplicitVRLittleEndian
        self._plants: list = []
        self._uid: str | None = None

    @property
    def sop_instance_uid(self) -> str:
        return self._uid or self.study.uid("instance", self.series.number, self.number)

    def with_uid(self, sop_instance_uid: str) -> InstanceBuilder:
        """Use this SOP Instance UID instead of the seeded one (the pixels follow the UID)."""
        self._uid = sop_instance_uid
        return self

    def implicit(self) -> InstanceBuilder:
        """Encode as Implicit VR Little Endian instead of Explicit."""
        self.transfer_syntax = ImplicitVRLittleEndian
        return self

    # -- PHI to plant (each one a small function of the dataset, applied after the modules) --
    def _plant(self, fn, *args) -> InstanceBuilder:
        self._plants.append((fn, args))
        return self

    def with_other_patient_ids(self, *ids: str) -> InstanceBuilder:
        return self._plant(phi.other_patient_ids, ids or ("OLDMRN0042",))

    def with_institution(self, name: str = "ST ELSEWHERE HOSPITAL",
                         address: str = "1 MAIN ST^SPRINGFIELD") -> InstanceBuilder:
        return self._plant(phi.institution, name, address)

    def with_physicians(self, performing: str = "HOUSE^GREGORY", referring: str = "WELBY^MARCUS") -> InstanceBuilder:
        return self._plant(phi.physicians, performing, referring)

    def with_operators(self, *names: str) -> InstanceBuilder:
        return self._plant(phi.operators, names or ("RADTECH^ROBIN",))

    def with_station(self, name: str = "CT3-SPRINGFIELD", serial: str = "SN-4471-88") -> InstanceBuilder:
        return self._plant(phi.station, name, serial)

    def with_descriptions(self, study: str = "CT FOR DOE JANE", series: str = "AXIAL DOE") -> InstanceBuilder:
        return self._plant(phi.descriptions, study, series)

    def with_comments(self, text: str | None = None) -> InstanceBuilder:
        """Free text naming the patient: ImageComments on images, a TEXT item on an SR."""
        return self._plant(phi.comments, text)

    def with_private_tags(self) -> InstanceBuilder:
        """A safe private element (GEMS_ACQU_01 (0019,xx23) DS) and unsafe ones (the name in a LO)."""
        return self._plant(phi.private_tags)

    def with_free_text(self, text: str) -> InstanceBuilder:
        """`text` in free text the profile keeps: a top-level UT that Table E.1-1 does not list,
        a UT two sequences down (Private Data Element Characteristics > Definition), and the
        LO of a safe private element (kept with Retain Safe Private)."""
        return self._plant(phi.free_text, text)

    def with_overlay(self, label: str | None = None) -> InstanceBuilder:
        return self._plant(phi.overlay, label)

    def with_curve(self) -> InstanceBuilder:
        """A retired curve (group 5000) whose description names the patient."""
        return self._plant(phi.curve)

    def with_nested_phi(self) -> InstanceBuilder:
        """Request Attributes > Scheduled Protocol Code > Protocol Context: name, date, UID at depth 3."""
        return self._plant(phi.nested)

    def with_attributes(self, **values: object) -> InstanceBuilder:
        """Set attributes by keyword after the modules (e.g. PatientName="...", StudyDate="...")."""
        return self._plant(phi.attributes, values)

    def with_private(self, group: int, creator: str, offset: int, vr: str, value: object) -> InstanceBuilder:
        """A private element (group, creator's block, element offset 0x00-0xFF)."""
        return self._plant(phi.private, group, creator, offset, vr, value)

    def with_burned_in_text(self, lines: list[str], x: int = 10, y: int = 10, size: int = 16) -> InstanceBuilder:
        """`lines` rendered into the pixels at (x, y), `size` pixels high (Pillow's default font),
        at the brightest value the image can store, in every frame and channel."""
        return self._plant(phi.burned_in_text, list(lines), x, y, size)

    def with_all_phi(self) -> InstanceBuilder:
        for method in (self.with_other_patient_ids, self.with_institution, self.with_physicians, self.with_operators,
                       self.with_station, self.with_descriptions, self.with_comments, self.with_private_tags,
                       self.with_nested_phi):
            method()
        if self.kind not in ("sr", "pr"):
            self.with_overlay()
        return self

    # -- output ----------------------------------------------------------------------------
    def build(self) -> FileDataset:
        from gantry_node.testing import documents, images

        ds = Dataset()
        self._common(ds)
        fill = {**images.KINDS, **documents.KINDS}[self.kind]
        fill(ds, self)
        for fn, args in self._plants:
            fn(ds, self, *args)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = self.transfer_syntax
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        out = FileDataset("", ds, file_meta=meta, preamble=b"\0" * 128)
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.build().save_as(path, enforce_file_format=True)
        return path

    def _common(self, ds: Dataset) -> None:
        study, series = self.study, self.series
        ds.SpecificCharacterSet = study.character_set
        ds.InstanceCreationDate = study.date
        ds.InstanceCreationTime = study.time
        ds.SOPInstanceUID = self.sop_instance_uid
        # Patient
        ds.PatientName = study.patient_name
        ds.PatientID = study.patient_id
        ds.PatientBirthDate = study.birth_date
        ds.PatientSex = study.sex
        # General Study
        ds.StudyInstanceUID = study.instance_uid
        ds.StudyDate = study.date
        ds.StudyTime = study.time
        ds.ReferringPhysicianName = study.referring_physician
        ds.StudyID = study.study_id
        ds.AccessionNumber = study.accession_number
        if study.description:
            ds.StudyDescription = study.description
        # General Series (the SR and PR series modules are the same attributes plus a few)
        ds.Modality = series.modality
        ds.SeriesInstanceUID = series.instance_uid
        ds.SeriesNumber = series.number
        ds.SeriesDate = study.date
        ds.SeriesTime = study.time
        if series.description:
            ds.SeriesDescription = series.description
        # General Equipment
        ds.Manufacturer = "GANTRY SYNTHETIC"
        ds.ManufacturerModelName = "BUILDER"
        ds.SoftwareVersions = "1"
        ds.InstanceNumber = self.number
        if self.kind != "sr":
            ds.BodyPartExamined = "CHEST"  # without it dciodvfy cannot tell whether Laterality is needed
        if self.kind != "pr":
            ds.ContentDate = study.date
            ds.ContentTime = study.time
