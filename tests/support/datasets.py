"""Tiny hand-made datasets for unit tests of single rules (whole valid studies come from
gantry_node.testing)."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

CT = "1.2.840.10008.5.1.4.1.1.2"
SR = "1.2.840.10008.5.1.4.1.1.88.33"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
UNKNOWN_SOP_CLASS = "1.2.3.4.5.6.7.8.9"


def minimal(sop_class: str = CT, **attrs) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1001"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1002"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1003"
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "MRN12345"
    ds.PatientBirthDate = "19700214"
    ds.StudyDate = "20240311"
    ds.Modality = "CT"
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def item(**attrs) -> Dataset:
    d = Dataset()
    for key, value in attrs.items():
        setattr(d, key, value)
    return d


def seq(*items: Dataset) -> Sequence:
    return Sequence(list(items))
