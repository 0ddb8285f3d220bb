"""encode_dataset must give exactly the bytes of pydicom's save_as(enforce_file_format=True),
or raise what pydicom raises: on files as read, and on the datasets the engine builds."""

from __future__ import annotations

import warnings
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from gantry_node.engine.deid import default_policy, deidentify
from gantry_node.engine.encoding import _encode, encode_dataset
from gantry_node.testing import Study

MAX_FILE = 2_000_000  # keep the test fast: the large pydicom-data files add nothing new


def pydicom_encode(ds: Dataset) -> bytes | str:
    buffer = BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}"
    return buffer.getvalue()


def ours(ds: Dataset) -> bytes | str:
    try:
        return encode_dataset(ds)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}"


def bundled_files() -> list[Path]:
    folders = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store

        folders.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return sorted(p for f in folders for p in f.rglob("*.dcm") if p.stat().st_size < MAX_FILE)


def test_same_bytes_as_pydicom_for_bundled_files_as_read_and_deidentified(keys):
    fast = 0
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in bundled_files():
            try:
                a, b = pydicom.dcmread(path), pydicom.dcmread(path)
            except Exception:  # noqa: BLE001 -- not readable at all: nothing to encode
                continue
            assert ours(b) == pydicom_encode(a), path
            checked += 1
            try:
                c, d = (deidentify(pydicom.dcmread(path), default_policy(), keys).dataset for _ in range(2))
            except Exception:  # noqa: BLE001 -- the engine refuses it: not encoded in the pipeline
                continue
            want = pydicom_encode(c)
            try:
                got = _encode(d)
                fast += 1
            except Exception:  # noqa: BLE001 -- left to pydicom
                got = ours(d)
            assert got == want, path
    assert checked > 100
    assert fast > 80  # most take the fast path (the rest are big endian, deflated, ...)


def test_same_bytes_for_synthetic_kinds_explicit_and_implicit(keys):
    study = Study.for_patient(name="DOE^JANE", patient_id="MRN1", birth_date="19700214", sex="F").on("20240311")
    cts = study.series("CT").ct_images(count=2)
    builders = [study.series("CT").ct_image(rows=64, columns=64), study.series("MR").mr_image(rows=32, columns=32),
                study.series("OT").sc_image(rows=32, columns=32, rgb=True),
                study.series("US").us_image(rows=48, columns=64),
                study.series("CT").multiframe_image(frames=2, rows=16, columns=16),
                study.series("SR").sr(referencing=cts), study.series("PR").presentation_state(referencing=cts)]
    builders += [b.implicit() for b in (study.series("CT").ct_image(rows=32, columns=32),
                                        study.series("MR").mr_image(rows=32, columns=32))]
    for builder in builders:
        builder.with_all_phi()
        for deidentified in (False, True):
            a, b = builder.build(), builder.build()
            if deidentified:
                a, b = (deidentify(x, default_policy(), keys).dataset for x in (a, b))
            want = pydicom_encode(a)
            assert isinstance(want, bytes)
            assert _encode(b) == want, builder.kind


def _scratch(ts=ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    return ds


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_same_bytes_for_odd_values_sequences_and_charsets(ts):
    def build() -> Dataset:
        ds = _scratch(ts)
        ds.SpecificCharacterSet = ["ISO 2022 IR 6", "ISO 2022 IR 87"]
        ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
        ds.StudyDescription = "odd"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelSpacing = ["0.5", "0.50"]
        ds.InstanceNumber = "7"
        ds.add_new(0x00091010, "OB", b"\x01\x02\x03")  # odd length: padded
        ds.add_new(0x00280106, "US", 0)  # smallest image pixel value: ambiguous VR in the dictionary
        ds.PixelRepresentation = 1
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "113100", "DCM", "Basic"
        inner = Dataset()
        inner.is_undefined_length_sequence_item = True
        inner.TextValue = "deep"
        item.ContentSequence = Sequence([inner])
        ds.DeidentificationMethodCodeSequence = Sequence([item, Dataset()])
        ds.add_new(0x00081111, "SQ", Sequence())
        ds[0x00081111].is_undefined_length = True
        return ds

    assert _encode(build()) == pydicom_encode(build())


def test_encapsulated_pixel_data_and_errors_match_pydicom():
    from pydicom.encaps import encapsulate

    def build(pixels: bytes) -> Dataset:
        ds = _scratch(JPEGBaseline8Bit)
        ds.Rows = ds.Columns = 2
        ds.PixelData = pixels
        return ds

    frame = encapsulate([b"\xff\xd8\xff\xd9"])
    assert _encode(build(frame)) == pydicom_encode(build(frame))
    assert ours(build(b"\x00" * 4)) == pydicom_encode(build(b"\x00" * 4)) == "ValueError"  # not encapsulated
    no_meta = _scratch()
    del no_meta.file_meta
    assert ours(no_meta) == pydicom_encode(_scratch_without_meta())


def _scratch_without_meta() -> Dataset:
    ds = _scratch()
    del ds.file_meta
    return ds
