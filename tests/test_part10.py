"""The SCP's own File Meta encoder writes exactly what pydicom writes."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from gantry_node.io.file_meta import PREAMBLE, file_meta


def pydicom_meta(sop_class: str, sop_uid: str, ts: str, source_ae: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYNETDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = PYNETDICOM_IMPLEMENTATION_VERSION
    if source_ae:
        meta.SourceApplicationEntityTitle = source_ae
    out = DicomBytesIO()
    out.write(PREAMBLE)
    write_file_meta_info(out, meta, enforce_standard=True)
    return out.getvalue()


@pytest.mark.parametrize("sop_uid", ["1.2.3.4", "1.2.3.45", "2.25.123456789012345678901234567890123456"])
@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1.99"])
@pytest.mark.parametrize("source_ae", ["", "CT01", "MODALITY_AE"])
def test_same_bytes_as_pydicom(sop_uid, ts, source_ae):
    sop_class = "1.2.840.10008.5.1.4.1.1.2"
    assert file_meta(sop_class, sop_uid, ts, source_ae) == pydicom_meta(sop_class, sop_uid, ts, source_ae)


def test_reads_back_with_the_data_set():
    from pydicom.data import get_testdata_file

    ds = dcmread(get_testdata_file("CT_small.dcm"))  # Explicit VR Little Endian
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    data_set = body.getvalue()
    raw = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID, "CT01") + data_set
    back = dcmread(BytesIO(raw))
    assert back.file_meta.SourceApplicationEntityTitle == "CT01"
    assert back.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert back.PatientName == ds.PatientName and back.PixelData == ds.PixelData
