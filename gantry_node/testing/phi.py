"""PHI planted into synthetic instances for de-identification tests. Each function takes the
dataset being built and its builder, and puts identifying values where real devices put them."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import pack_bits
from pydicom.sequence import Sequence

SAFE_PRIVATE_CREATOR = "GEMS_ACQU_01"  # Table E.3.10-1 lists (0019,xx23) Table Speed, DS
UNSAFE_PRIVATE_CREATOR = "ACME PHI 01"  # a vendor block no table knows


def spoken_name(pn: str) -> str:
    """'DOE^JANE^Q' -> 'JANE Q DOE', the way a name appears in free text."""
    parts = [p for p in str(pn).split("^") if p]
    return " ".join(parts[1:] + parts[:1])


def code(value: str, meaning: str, scheme: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def other_patient_ids(ds: Dataset, builder, ids) -> None:
    items = []
    for value in ids:
        item = Dataset()
        item.PatientID = value
        item.IssuerOfPatientID = "OLD HOSPITAL"
        item.TypeOfPatientID = "TEXT"
        items.append(item)
    ds.OtherPatientIDsSequence = Sequence(items)


def institution(ds: Dataset, builder, name: str, address: str) -> None:
    ds.InstitutionName = name
    ds.InstitutionAddress = address
    ds.InstitutionalDepartmentName = "RADIOLOGY EAST WING"


def physicians(ds: Dataset, builder, performing: str, referring: str) -> None:
    ds.ReferringPhysicianName = referring
    if builder.kind == "pr":  # the Presentation Series has no performing physician; the creator stands in
        ds.ContentCreatorName = performing
    else:
        ds.PerformingPhysicianName = performing


def operators(ds: Dataset, builder, names) -> None:
    ds.OperatorsName = list(names) if len(names) > 1 else names[0]


def station(ds: Dataset, builder, name: str, serial: str) -> None:
    ds.StationName = name
    ds.DeviceSerialNumber = serial


def descriptions(ds: Dataset, builder, study: str, series: str) -> None:
    ds.StudyDescription = study
    ds.SeriesDescription = series


def comments(ds: Dataset, builder, text: str | None) -> None:
    study = builder.study
    text = text or f"Patient {spoken_name(study.patient_name)} (MRN {study.patient_id}) tolerated the scan well."
    if builder.kind == "sr":
        from gantry_node.testing.documents import text_item

        ds.ContentSequence.append(text_item("121106", "Comment", text))
    elif builder.kind == "pr":
        ds.ContentDescription = text[:64]
    else:
        ds.ImageComments = text


def private_tags(ds: Dataset, builder) -> None:
    name = str(builder.study.patient_name)
    safe = ds.private_block(0x0019, SAFE_PRIVATE_CREATOR, create=True)
    safe.add_new(0x23, "DS", "39.375")  # safe: Table Speed
    safe.add_new(0x10, "LO", name[:64])  # same block, not in the safe list
    unsafe = ds.private_block(0x0029, UNSAFE_PRIVATE_CREATOR, create=True)
    unsafe.add_new(0x10, "LO", name[:64])
    unsafe.add_new(0x11, "LO", builder.study.patient_id)
    unsafe.add_new(0x12, "DA", builder.study.birth_date or "19700101")


FREE_TEXT_PLACES = ("StrainAdditionalInformation",
                    "PrivateDataElementCharacteristicsSequence[0].PrivateDataElementDefinitionSequence[0]"
                    ".PrivateDataElementDescription",
                    f"(0019,xx9E) {SAFE_PRIVATE_CREATOR}")


def free_text(ds: Dataset, builder, text: str) -> None:
    ds.StrainAdditionalInformation = text  # (0010,0218) UT, not in Table E.1-1
    definition = Dataset()
    definition.PrivateDataElement = 0x0010
    definition.PrivateDataElementValueMultiplicity = 1
    definition.PrivateDataElementValueRepresentation = "LO"
    definition.PrivateDataElementName = "Note"
    definition.PrivateDataElementDescription = text
    characteristics = Dataset()
    characteristics.PrivateGroupReference = 0x0029
    characteristics.PrivateCreatorReference = UNSAFE_PRIVATE_CREATOR
    characteristics.PrivateDataElementDefinitionSequence = Sequence([definition])
    ds.PrivateDataElementCharacteristicsSequence = Sequence([characteristics])
    block = ds.private_block(0x0019, SAFE_PRIVATE_CREATOR, create=True)
    block.add_new(0x9E, "LO", text[:64])  # Internal Pulse Sequence Name: in the safe list


def overlay(ds: Dataset, builder, label: str | None) -> None:
    rows, columns = int(ds.Rows), int(ds.Columns)
    mask = np.zeros((rows, columns), dtype=np.uint8)
    mask[rows // 8: rows // 8 + max(rows // 16, 2), columns // 8: columns // 2] = 1  # a text-like bar
    g = 0x6000
    ds.add_new((g, 0x0010), "US", rows)
    ds.add_new((g, 0x0011), "US", columns)
    ds.add_new((g, 0x0022), "LO", "ANNOTATION")
    ds.add_new((g, 0x0040), "CS", "G")
    ds.add_new((g, 0x0050), "SS", [1, 1])
    ds.add_new((g, 0x0100), "US", 1)
    ds.add_new((g, 0x0102), "US", 0)
    ds.add_new((g, 0x1500), "LO", (label or spoken_name(builder.study.patient_name))[:64])
    ds.add_new((g, 0x3000), "OW", pack_bits(mask.ravel()))


def curve(ds: Dataset, builder) -> None:
    g = 0x5000
    points = np.array([0, 10, 1, 20, 2, 15, 3, 5], dtype="<u2")
    ds.add_new((g, 0x0005), "US", 2)  # Curve Dimensions
    ds.add_new((g, 0x0010), "US", 4)  # Number of Points
    ds.add_new((g, 0x0020), "CS", "TAC")  # Type of Data
    ds.add_new((g, 0x0022), "LO", f"ECG {spoken_name(builder.study.patient_name)}"[:64])
    ds.add_new((g, 0x0103), "US", 0)  # Data Value Representation: unsigned short
    ds.add_new((g, 0x3000), "OW", points.tobytes())


def nested(ds: Dataset, builder) -> None:
    study = builder.study
    name_item, date_item, uid_item = Dataset(), Dataset(), Dataset()
    name_item.ValueType = "PNAME"
    name_item.ConceptNameCodeSequence = Sequence([code("121008", "Person Observer Name", "DCM")])
    name_item.PersonName = study.patient_name
    date_item.ValueType = "DATE"
    date_item.ConceptNameCodeSequence = Sequence([code("111060", "Study Date", "DCM")])
    date_item.Date = study.birth_date or study.date
    uid_item.ValueType = "UIDREF"
    uid_item.ConceptNameCodeSequence = Sequence([code("110180", "Study Instance UID", "DCM")])
    uid_item.UID = study.instance_uid
    protocol = code("24627-2", "CT Chest", "LN")
    protocol.ProtocolContextSequence = Sequence([name_item, date_item, uid_item])
    request = Dataset()
    request.RequestedProcedureID = "RP" + study.patient_id[-6:]
    request.ScheduledProcedureStepID = "SPS" + study.patient_id[-6:]
    request.ScheduledProtocolCodeSequence = Sequence([protocol])
    ds.RequestAttributesSequence = Sequence([request])


def attributes(ds: Dataset, builder, values: dict) -> None:
    for keyword, value in values.items():
        setattr(ds, keyword, value)


def private(ds: Dataset, builder, group: int, creator: str, offset: int, vr: str, value) -> None:
    ds.private_block(group, creator, create=True).add_new(offset, vr, value)


def burned_in_text(ds: Dataset, builder, lines: list[str], x: int, y: int, size: int) -> None:
    from gantry_node.testing.text import draw_text

    dtype = np.uint8 if ds.BitsAllocated == 8 else np.uint16
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.SamplesPerPixel)
    shape = (frames, ds.Rows, ds.Columns) + ((samples,) if samples > 1 else ())
    arr = np.frombuffer(ds.PixelData, dtype).reshape(shape).copy()
    top = (1 << int(ds.BitsStored)) - 1
    for f in range(frames):
        planes = [arr[f]] if samples == 1 else [arr[f][..., c] for c in range(samples)]
        for plane in planes:
            plane[...] = draw_text(plane, lines, x, y, size, top)
    ds.PixelData = arr.tobytes()
