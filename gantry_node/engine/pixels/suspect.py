"""Which images may carry burned-in text (and so need a machine rule, and the OCR gate)."""

from __future__ import annotations

from pydicom.dataset import Dataset

from gantry_node.engine.pixels.expr import Expr, evaluate

# Secondary capture and other screen-capture storage classes: pictures of screens.
SCREEN_CAPTURE_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.7",      # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.1",    # Multi-frame Single Bit Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.2",    # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",    # Multi-frame Grayscale Word Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",    # Multi-frame True Color Secondary Capture
)
DEFAULT_TEXT_MODALITIES = ("US", "SC", "XA", "ES")


def suspect_reasons(ds: Dataset, modalities: tuple[str, ...], sop_classes: tuple[str, ...],
                    heuristic: Expr | None) -> list[str]:
    """Why `ds` (the ORIGINAL dataset) may carry burned-in text; empty when nothing suggests it."""
    reasons = []
    if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        reasons.append("BurnedInAnnotation=YES")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality in modalities:
        reasons.append(f"modality {modality}")
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class in sop_classes:
        reasons.append("screen-capture SOP class")
    if heuristic is not None and evaluate(heuristic, ds):
        reasons.append("CTP burned-in heuristic")
    return reasons
