"""The start-up self-check: what the pixel stage needs and does not find, and which images
that will hold back.

The pipeline fails closed: without tesseract the OCR gate quarantines every image it should
read ("OCR unavailable"), and without a decoder for a compressed transfer syntax every image
in it that must be redacted or read is quarantined. Both are right, and both look like a
flood of quarantines for no visible reason; `serve` therefore says at start what is missing
and what it will hold, prints it once and audits it (`self_check`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from gantry_node.engine.pixels.config import PixelConfig
from gantry_node.io.pixel_files import read_pixels_section
from gantry_node.node.config import Config


@dataclass(frozen=True)
class Finding:
    missing: str  # what is missing, e.g. "tesseract not found"
    holds: str    # which images that will hold

    def message(self) -> str:
        return f"{self.missing}: {self.holds}"


def self_check(config: Config) -> list[Finding]:
    pixels = read_pixels_section(config.pixels, "pixels", config.base_dir)
    return [*_ocr(pixels), *_decoders()]


def _ocr_scope(pixels: PixelConfig) -> str | None:
    """The images the OCR gate reads, in words (None: it reads none)."""
    mods = [m for m in pixels.ocr.enabled_modalities]
    parts = []
    if mods:
        parts.append(f"every {'/'.join(mods)} image that may carry burned-in text"
                     + (" (screen captures count as SC)" if "SC" in mods else ""))
    if pixels.unknown_device == "ocr":
        parts.append("every image that may carry burned-in text from a device no pixel rule matches")
    return " and ".join(parts) or None


def _ocr(pixels: PixelConfig) -> list[Finding]:
    scope = _ocr_scope(pixels)
    if scope is None:
        return []
    holds = f"{scope} will be quarantined (the OCR gate fails closed)"
    try:
        import pytesseract
    except ImportError:
        return [Finding("pytesseract not installed", holds)]
    binary = pytesseract.pytesseract.tesseract_cmd
    if shutil.which(binary) is None:
        return [Finding(f"tesseract not found ({binary!r} is not on PATH)", holds)]
    try:
        have = set(pytesseract.get_languages(config=""))
    except Exception as exc:  # noqa: BLE001 -- a tesseract that cannot list its languages cannot read either
        return [Finding(f"tesseract does not run ({type(exc).__name__})", holds)]
    wanted = [lang for lang in pixels.ocr.language.split("+") if lang]
    lacking = [lang for lang in wanted if lang not in have]
    if lacking:
        return [Finding(f"tesseract language data for {'+'.join(lacking)} not found (pixels.ocr.language; "
                        f"installed: {', '.join(sorted(have)) or 'none'})", holds)]
    return []


def _decoders() -> list[Finding]:
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID

    from gantry_node.node.network.scp import TRANSFER_SYNTAXES

    out = []
    for ts in map(UID, TRANSFER_SYNTAXES):
        if not ts.is_encapsulated:
            continue
        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            available, needs = False, []
        else:
            available, needs = decoder.is_available, decoder.missing_dependencies
        if not available:
            hint = f" (install one of: {'; '.join(needs)})" if needs else ""
            out.append(Finding(f"no pixel decoder for {ts.name}{hint}",
                               f"every {ts.name} image that must be redacted or read by OCR will be quarantined"))
    return out
