"""The study and series a synthetic instance belongs to: patient, dates, numbering and UIDs."""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataset import FileDataset
from pydicom.uid import generate_uid

from gantry_node.testing.instance import InstanceBuilder


class Study:
    """One patient's study. Fluent setters return the study itself."""

    def __init__(self, name: str, patient_id: str, birth_date: str = "", sex: str = "", seed: str = "gantry") -> None:
        self.patient_name = name
        self.patient_id = patient_id
        self.birth_date = birth_date
        self.sex = sex
        self.seed = seed
        self.date = "20240101"
        self.time = "090000"
        self.accession_number = ""
        self.description = ""
        self.referring_physician = ""
        self.study_id = "1"
        self.character_set: str | list[str] = "ISO_IR 100"
        self._uid: str | None = None
        self._series_count = 0

    @classmethod
    def for_patient(cls, name: str, patient_id: str, birth_date: str = "", sex: str = "",
                    seed: str = "gantry") -> Study:
        return cls(name, patient_id, birth_date, sex, seed)

    def on(self, date: str, time: str = "090000") -> Study:
        self.date, self.time = date, time
        return self

    def accession(self, number: str) -> Study:
        self.accession_number = number
        return self

    def described(self, text: str) -> Study:
        self.description = text
        return self

    def in_character_set(self, term: str | list[str]) -> Study:
        """The Specific Character Set (0008,0005) of every instance: one defined term, or
        several for ISO 2022 code extensions (e.g. ["ISO 2022 IR 6", "ISO 2022 IR 87"])."""
        self.character_set = term
        return self

    def referred_by(self, physician: str) -> Study:
        self.referring_physician = physician
        return self

    def uid(self, *parts: object) -> str:
        """A UID fixed by the seed, the patient, the accession number and `parts`."""
        return generate_uid(entropy_srcs=[self.seed, self.patient_id, self.accession_number, *map(str, parts)])

    def with_uid(self, study_instance_uid: str) -> Study:
        """Use this Study Instance UID instead of the seeded one (e.g. to add to a study a test made)."""
        self._uid = study_instance_uid
        return self

    @property
    def instance_uid(self) -> str:
        return self._uid or self.uid("study")

    def series(self, modality: str, description: str = "") -> Series:
        self._series_count += 1
        return Series(self, modality, self._series_count, description)


class Series:
    """A series of one modality in a study; each builder it hands out is the next instance."""

    def __init__(self, study: Study, modality: str, number: int, description: str = "") -> None:
        self.study = study
        self.modality = modality
        self.number = number
        self.description = description
        self.instance_uid = study.uid("series", number)
        self.frame_of_reference_uid = study.uid("frame-of-reference", number)
        self._instance_count = 0

    def described(self, text: str) -> Series:
        self.description = text
        return self

    def with_uid(self, series_instance_uid: str, frame_of_reference_uid: str | None = None) -> Series:
        """Use this Series Instance UID (and Frame of Reference UID) instead of the seeded ones."""
        self.instance_uid = series_instance_uid
        if frame_of_reference_uid:
            self.frame_of_reference_uid = frame_of_reference_uid
        return self

    def _next(self, kind: str, **params) -> InstanceBuilder:
        self._instance_count += 1
        return InstanceBuilder(self, kind, self._instance_count, params)

    # -- images --------------------------------------------------------------------------
    def ct_image(self, rows: int = 512, columns: int = 512, bits: int = 16) -> InstanceBuilder:
        return self._next("ct", rows=rows, columns=columns, bits=bits)

    def ct_images(self, count: int, rows: int = 512, columns: int = 512, bits: int = 16) -> list[FileDataset]:
        """`count` CT slices of this series at consecutive positions, built."""
        return [self.ct_image(rows, columns, bits).build() for _ in range(count)]

    def mr_image(self, rows: int = 256, columns: int = 256) -> InstanceBuilder:
        return self._next("mr", rows=rows, columns=columns)

    def sc_image(self, rows: int = 256, columns: int = 256, rgb: bool = False) -> InstanceBuilder:
        return self._next("sc", rows=rows, columns=columns, rgb=rgb)

    def us_image(self, rows: int = 480, columns: int = 640) -> InstanceBuilder:
        """An RGB ultrasound with BurnedInAnnotation YES."""
        return self._next("us", rows=rows, columns=columns)

    def multiframe_image(self, frames: int = 4, rows: int = 128, columns: int = 128) -> InstanceBuilder:
        """A Multi-frame Grayscale Word Secondary Capture image."""
        return self._next("multiframe", frames=frames, rows=rows, columns=columns)

    # -- documents that reference images -------------------------------------------------
    def sr(self, referencing: Sequence[FileDataset], text: str = "No acute findings.") -> InstanceBuilder:
        """A Comprehensive SR: evidence and IMAGE content items reference `referencing`."""
        return self._next("sr", referencing=list(referencing), text=text)

    def presentation_state(self, referencing: Sequence[FileDataset]) -> InstanceBuilder:
        """A Grayscale Softcopy Presentation State applying to `referencing`."""
        return self._next("pr", referencing=list(referencing))
