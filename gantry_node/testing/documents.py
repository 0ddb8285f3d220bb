"""The kinds that reference images: a Comprehensive SR and a Grayscale Softcopy Presentation
State. Both reference the given image instances by SOP Class and SOP Instance UID."""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ComprehensiveSRStorage, GrayscaleSoftcopyPresentationStateStorage

from gantry_node.testing.phi import code


def _by_series(images: Iterable[Dataset]) -> dict[tuple[str, str], list[Dataset]]:
    groups: dict[tuple[str, str], list[Dataset]] = {}
    for image in images:
        groups.setdefault((str(image.StudyInstanceUID), str(image.SeriesInstanceUID)), []).append(image)
    return groups


def sop_reference(image: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = image.SOPClassUID
    item.ReferencedSOPInstanceUID = image.SOPInstanceUID
    return item


def evidence(images: Iterable[Dataset]) -> Sequence:
    """Hierarchical SOP Instance references (study > series > instances)."""
    studies: dict[str, Dataset] = {}
    for (study_uid, series_uid), members in _by_series(images).items():
        study = studies.get(study_uid)
        if study is None:
            study = studies[study_uid] = Dataset()
            study.StudyInstanceUID = study_uid
            study.ReferencedSeriesSequence = Sequence()
        series = Dataset()
        series.SeriesInstanceUID = series_uid
        series.ReferencedSOPSequence = Sequence([sop_reference(m) for m in members])
        study.ReferencedSeriesSequence.append(series)
    return Sequence(studies.values())


def text_item(value: str, meaning: str, text: str) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = Sequence([code(value, meaning, "DCM")])
    item.TextValue = text
    return item


def image_item(image: Dataset) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "IMAGE"
    item.ConceptNameCodeSequence = Sequence([code("121112", "Source of Measurement", "DCM")])
    item.ReferencedSOPSequence = Sequence([sop_reference(image)])
    return item


def sr(ds: Dataset, builder) -> None:
    images = builder.params["referencing"]
    ds.SOPClassUID = ComprehensiveSRStorage
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.PerformedProcedureCodeSequence = Sequence()
    if images:
        ds.CurrentRequestedProcedureEvidenceSequence = evidence(images)
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([code("18748-4", "Diagnostic imaging report", "LN")])
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentSequence = Sequence([text_item("121071", "Finding", builder.params["text"])])
    ds.ContentSequence.extend(image_item(image) for image in images)


def pr(ds: Dataset, builder) -> None:
    images = builder.params["referencing"]
    if not images:
        raise ValueError("a presentation state must reference at least one image")
    first = images[0]
    ds.SOPClassUID = GrayscaleSoftcopyPresentationStateStorage
    ds.ContentLabel = "SYNTHETIC"
    ds.ContentDescription = "Window for soft tissue"
    ds.PresentationCreationDate = builder.study.date
    ds.PresentationCreationTime = builder.study.time
    ds.ContentCreatorName = ""
    series_items = []
    for (_, series_uid), members in _by_series(images).items():
        item = Dataset()
        item.SeriesInstanceUID = series_uid
        item.ReferencedImageSequence = Sequence([sop_reference(m) for m in members])
        series_items.append(item)
    ds.ReferencedSeriesSequence = Sequence(series_items)
    area = Dataset()
    area.DisplayedAreaTopLeftHandCorner = [1, 1]
    area.DisplayedAreaBottomRightHandCorner = [int(first.Columns), int(first.Rows)]
    area.PresentationSizeMode = "SCALE TO FIT"
    area.PresentationPixelAspectRatio = [1, 1]
    ds.DisplayedAreaSelectionSequence = Sequence([area])
    if "RescaleSlope" in first:
        ds.RescaleIntercept, ds.RescaleSlope = first.RescaleIntercept, first.RescaleSlope
        ds.RescaleType = first.get("RescaleType", "US")
    voi = Dataset()
    voi.WindowCenter, voi.WindowWidth = 40, 400
    ds.SoftcopyVOILUTSequence = Sequence([voi])
    ds.PresentationLUTShape = "IDENTITY"
    ds.ImageRotation = 0
    ds.ImageHorizontalFlip = "N"


KINDS = {"sr": sr, "pr": pr}
