"""An instance as DICOM Part 10 bytes, in memory (what verification checks is what is written)."""

from __future__ import annotations

from io import BytesIO

from pydicom.dataset import Dataset


def encode_dataset(ds: Dataset) -> bytes:
    """Preamble, file meta and dataset, in the transfer syntax of the dataset's file meta."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
