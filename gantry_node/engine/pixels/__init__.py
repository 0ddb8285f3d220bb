"""Burned-in pixel redaction (docs/pixels.md).

    expr, rules    signature expressions and machine rules, with their YAML form
    ctp            RSNA CTP script import (DicomPixelAnonymizer, BurnedInPixelsFilter)
    library        the shipped rule files in rules/
    suspect        which images may carry burned-in text
    codec, redact  decode any accepted transfer syntax, blank regions, write back
    ocr            the OCR gate (tesseract): read and judge text left in the pixels
    config         the `pixels:` configuration section
    stage          the pipeline stage (Engine.pixel_stage)
    api            file-level operations for the CLI and Session (import, scaffold, preview)

Everything but `stage` (pipeline) and `api` (files) is pure: Dataset / ndarray in and out.
"""
