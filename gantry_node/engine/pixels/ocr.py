"""The OCR gate: read text left in the pixels and judge whether it identifies someone.

Reading (tesseract through pytesseract): each frame becomes an 8-bit luminance image
(palette and colour applied, min-max stretched, MONOCHROME1 inverted), is upscaled so that
small overlay text is ~2-3x the height tesseract reads best, and binarised so the text is black
on white: on a dark image (median < 128; ultrasound, screen captures) pixels brighter than
`threshold` are text, on a light image pixels darker than 255 - threshold. Tesseract runs in
sparse-text mode (--psm 11). Frames read: all when there are at most `max_frames`, otherwise
`max_frames` frames spread evenly from the first to the last (first, middle, last for 3).

Judging: a line of text is a finding when it contains the original patient's name parts
(3 letters or more; shorter parts such as "OB" are common words), IDs or birth date
(`gantry_node.engine.deid.Identity`), or anything that looks like a date, a name written
"LAST^FIRST" (OCR often reads the caret as * or ~) or "LAST, FIRST", a labelled identifier
(MRN, ID, DOB, NAME, ACC), a number of 7 or more digits in dash-separated groups or 9 or more
plain digits, an institution name (HOSPITAL, MEDICAL, MED CTR, CLINIC...), a phone number,
e-mail or street address. Each line is judged as read and again with the letters OCR confuses
with digits (O, I, l, S, B...) read as digits in tokens that hold digits ("24-MAY-O2").
A finding carries the box and what it resembled, never the text.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from gantry_node.engine.deid import Identity
from gantry_node.engine.deid.identity import date_forms, phi_spans

OCR_TIMEOUT_SECONDS = 120  # per frame; a timeout raises, and the stage quarantines (fails closed)
MONTHS = r"(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|SEPT|OCT|NOV|DEC)[A-Z]*"
LOOKS_LIKE: dict[str, re.Pattern[str]] = {
    "date": re.compile(
        r"(?<!\d)\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})(?!\d)"
        r"|(?<!\d)(?:19|20)\d{2}[-/.]\d{1,2}[-/.]\d{1,2}(?!\d)"
        rf"|(?<!\d)\d{{1,2}}[-\s.]?{MONTHS}[-\s.,]*(?:\d{{4}}|\d{{2}})(?!\d)"
        rf"|\b{MONTHS}[-\s.]+\d{{1,2}},?[-\s.]+\d{{2,4}}(?!\d)",
        re.IGNORECASE,
    ),
    "person name": re.compile(
        r"\b[A-Za-z][A-Za-z'-]+[\^*~][A-Za-z][A-Za-z'-]*|\b[A-Z][A-Za-z'-]{2,},\s*[A-Z][A-Za-z'-]{2,}\b"),
    "labelled identifier": re.compile(
        r"\b(?:MRN|PID|DOB|D\.O\.B|NAME|PATIENT|PAT|ACC(?:ESSION)?|ID|BIRTH)\s*[:#=]", re.IGNORECASE),
    "identifier": re.compile(r"(?<![\w.])(?=(?:\d-?){7})\d+(?:-\d+)+(?![\w.])|(?<![\w.])\d{9,}(?![\w.])"),
    "institution name": re.compile(
        r"\b(?:HOSPITAL|MEDICAL|MED\.?\s+C(?:TR|ENTER)|CLINIC|KLINIK|KLINIKUM|INFIRMARY|HOSPITAAL|H[OÔ]PITAL)\b",
        re.IGNORECASE),
}


@dataclass(frozen=True)
class Word:
    text: str
    confidence: float
    frame: int
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class TextFinding:
    what: str     # "patient name part", "date", ... (never the text)
    frame: int
    box: tuple[int, int, int, int]  # x, y, width, height in image pixels

    def describe(self) -> str:
        x, y, w, h = self.box
        return f"text resembling a {self.what} in frame {self.frame} at x={x} y={y} width={w} height={h}"


def sample_frames(count: int, max_frames: int) -> list[int]:
    if count <= max_frames:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, max_frames)})


def luminance(frame: np.ndarray, photometric: str, ds: Dataset) -> np.ndarray:
    """One frame as 8-bit luminance, stretched to 0..255, brighter = whiter on screen."""
    if photometric == "PALETTE COLOR":
        frame = apply_color_lut(frame, ds)
    if frame.ndim == 3:
        f = frame.astype(np.float32)
        is_ybr = photometric == "YBR_FULL"
        lum = f[..., 0] if is_ybr else 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    else:
        lum = frame.astype(np.float32)
    lo, hi = float(lum.min()), float(lum.max())
    out = (lum - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(lum)
    if photometric == "MONOCHROME1":
        out = 255.0 - out
    return out.astype(np.uint8)


def prepare(gray: np.ndarray, threshold: int = 150) -> tuple[np.ndarray, int]:
    """Upscaled, binarised image (black text on white) and the scale factor used."""
    from PIL import Image

    scale = 3 if max(gray.shape) <= 400 else 2 if max(gray.shape) <= 1400 else 1
    if scale > 1:
        gray = np.asarray(Image.fromarray(gray).resize((gray.shape[1] * scale, gray.shape[0] * scale),
                                                       Image.LANCZOS))
    text = gray > threshold if np.median(gray) < 128 else gray < 255 - threshold
    return np.where(text, 0, 255).astype(np.uint8), scale


def read_words(gray: np.ndarray, frame: int = 0, language: str = "eng", min_confidence: float = 50.0) -> list[Word]:
    """Words tesseract reads in one 8-bit luminance frame, boxes in image coordinates."""
    import pytesseract
    from PIL import Image

    image, scale = prepare(gray)
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # tesseract's threads only slow a busy node down
    data = pytesseract.image_to_data(Image.fromarray(image), lang=language,
                                     config="--psm 11 -c tessedit_do_invert=0",
                                     output_type=pytesseract.Output.DICT, timeout=OCR_TIMEOUT_SECONDS)
    words = []
    for i, text in enumerate(data["text"]):
        conf = float(data["conf"][i])
        if text.strip() and conf >= min_confidence:
            words.append(Word(text.strip(), conf, frame, data["left"][i] // scale, data["top"][i] // scale,
                              max(1, data["width"][i] // scale), max(1, data["height"][i] // scale)))
    return words


def lines(words: list[Word]) -> list[list[Word]]:
    """Words grouped into lines by vertical overlap, each line left to right."""
    out: list[list[Word]] = []
    for word in sorted(words, key=lambda w: (w.frame, w.y, w.x)):
        for line in out:
            ref = line[0]
            if ref.frame == word.frame and abs((ref.y + ref.height / 2) - (word.y + word.height / 2)) < \
                    max(ref.height, word.height) * 0.6:
                line.append(word)
                break
        else:
            out.append([word])
    return [sorted(line, key=lambda w: w.x) for line in out]


_DIGIT_LOOKALIKES = str.maketrans({"O": "0", "o": "0", "D": "0", "Q": "0", "I": "1", "l": "1", "|": "1",
                                   "i": "1", "S": "5", "B": "8", "Z": "2", "z": "2"})


def digit_reading(text: str) -> str:
    """`text` with the letters OCR confuses with digits read as digits, in tokens that already
    hold two digits or more ("24-MAY-O2" -> "24-MAY-02", "l2345678" -> "12345678"); month names
    and words stay as they are."""
    def fix(token: str) -> str:
        if sum(c.isdigit() for c in token) < 2:
            return token
        parts = re.split(r"([-/.:])", token)
        return "".join(p.translate(_DIGIT_LOOKALIKES) if any(c.isdigit() for c in p) else p for p in parts)

    return re.sub(r"\S+", lambda m: fix(m.group(0)), text)


def fold(text: str) -> str:
    """Upper case with OCR look-alikes made one character (O/D/Q->0, I/L/|->1, S->5, B->8, Z->2);
    same length."""
    return text.upper().translate(_FOLD)


_FOLD = str.maketrans({"O": "0", "D": "0", "Q": "0", "I": "1", "L": "1", "|": "1", "S": "5", "B": "8", "Z": "2"})


def folded_identity_spans(text: str, identity: Identity) -> list[tuple[int, int, str]]:
    """The patient's IDs and birth date found despite OCR look-alikes ("PIDl2345" for PID12345)."""
    folded = fold(text)
    needles = [(value, "patient or order id") for value in identity.ids if len(value) >= 3]
    if len(identity.birth_date) == 8:
        needles += [(form, "birth date") for form in date_forms(identity.birth_date)]
    spans = []
    for value, what in needles:
        spans += [(m.start(), m.end(), what) for m in re.finditer(re.escape(fold(value)), folded)]
    return spans


def judge(words: list[Word], identity: Identity | None) -> list[TextFinding]:
    """Findings among OCR words: identity matches and anything that looks like PHI."""
    ident = identity or Identity()
    ident = dataclasses.replace(ident, name_parts=tuple(p for p in ident.name_parts if len(p) >= 3))
    findings = []
    for line in lines(words):
        text, starts = "", []
        for word in line:
            starts.append(len(text))
            text += word.text + " "
        spans = list(phi_spans(text, ident)) + folded_identity_spans(text, ident)
        digits = digit_reading(text)  # same length as text: offsets hold for both readings
        for reading in [text] if digits == text else [text, digits]:
            for what, pattern in LOOKS_LIKE.items():
                spans += [(m.start(), m.end(), what) for m in pattern.finditer(reading)]
        for start, end, what in spans:
            hit = [w for w, s in zip(line, starts, strict=True) if s < end and s + len(w.text) > start]
            x0, y0 = min(w.x for w in hit), min(w.y for w in hit)
            x1, y1 = max(w.x + w.width for w in hit), max(w.y + w.height for w in hit)
            finding = TextFinding(what, line[0].frame, (x0, y0, x1 - x0, y1 - y0))
            if finding not in findings:
                findings.append(finding)
    return findings
