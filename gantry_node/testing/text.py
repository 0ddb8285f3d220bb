"""Text rendered into pixels: the burned-in annotations of the OCR and redaction tests."""

from __future__ import annotations

import numpy as np


def draw_text(image: np.ndarray, lines: list[str], x: int, y: int, size: int = 16, value: int = 255) -> np.ndarray:
    """Render text into a 2-D (or RGB) array with Pillow's default font at `size` pixels
    (the FreeType build of the default font; a typical ultrasound overlay is 10-16 px).
    Returns a copy; the text pixels hold `value`."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    height = int(size * 1.4) * len(lines)
    width = int(max(len(line) for line in lines) * size * 0.8) + 8
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((2, i * int(size * 1.4)), line, fill=255, font=font)
    mask = np.asarray(canvas) > 127
    out = image.copy()
    target = out[y:y + height, x:x + width]
    target[mask[: target.shape[0], : target.shape[1]]] = value
    return out
