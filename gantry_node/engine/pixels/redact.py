"""Blank regions of decoded frames with the image's black.

Black is: the smallest stored value in the image for MONOCHROME2, the largest for
MONOCHROME1, (0, 0, 0) for RGB, (0, half, half) for YBR_FULL (luma 0, neutral chroma), and
for PALETTE COLOR the palette index whose colour is darkest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from gantry_node.engine.deid import CLEAN_PIXEL_DATA, add_method_code
from gantry_node.engine.pixels.codec import Decoded, decode, encode
from gantry_node.engine.pixels.rules import Region


@dataclass
class Redaction:
    changed: bool = False
    frames_changed: int = 0
    pixels_changed: int = 0
    regions: list[list[int]] = field(default_factory=list)   # regions as clipped to the image
    transfer_syntax: str = ""                                 # written, when changed

    def notes(self) -> dict:
        return {"pixels_changed": self.pixels_changed, "frames_changed": self.frames_changed,
                "regions": self.regions, "transfer_syntax": self.transfer_syntax}


def black_value(decoded: Decoded, ds: Dataset) -> np.ndarray:
    """The fill value for one pixel (scalar array, or one value per sample)."""
    frames, pi = decoded.frames, decoded.photometric
    if pi == "MONOCHROME2":
        return np.asarray(frames.min(), dtype=frames.dtype)
    if pi == "MONOCHROME1":
        return np.asarray(frames.max(), dtype=frames.dtype)
    if pi == "RGB":
        return np.zeros(3, dtype=frames.dtype)
    if pi == "YBR_FULL":
        half = 1 << (decoded.bits_stored - 1)
        return np.array([0, half, half], dtype=frames.dtype)
    if pi == "PALETTE COLOR":
        return np.asarray(darkest_palette_index(ds, frames.dtype), dtype=frames.dtype)
    raise ValueError(f"no black defined for {pi}")


def darkest_palette_index(ds: Dataset, dtype: np.dtype) -> int:
    descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
    if descriptor is None:
        raise ValueError("PALETTE COLOR image without Red Palette Color Lookup Table Descriptor")
    entries, first = int(descriptor[0]) or 65536, int(descriptor[1])
    limit = np.iinfo(dtype).max
    indices = np.arange(first, min(first + entries, limit + 1), dtype=np.int64).astype(dtype)
    colours = apply_color_lut(indices, ds).astype(np.int64)
    return int(indices[int(np.argmin(colours.sum(axis=-1)))])


def blank_regions(frames: np.ndarray, regions: Iterable[Region], fill: np.ndarray,
                  in_place: bool = False) -> tuple[np.ndarray, Redaction]:
    """`frames` (a copy, unless in_place) with every region blanked in every frame, and what
    changed."""
    rows, columns = frames.shape[1], frames.shape[2]
    out = frames if in_place else frames.copy()
    changed_frames = np.zeros(frames.shape[0], dtype=bool)
    result = Redaction()
    for region in regions:
        clipped = region.clip(rows, columns)
        if clipped is None:
            continue
        rs, cs = clipped
        result.regions.append([cs.start, rs.start, cs.stop - cs.start, rs.stop - rs.start])
        block = out[:, rs, cs]
        differs = block != fill
        if differs.ndim == 4:
            differs = differs.any(axis=-1)
        result.pixels_changed += int(differs.sum())
        changed_frames |= differs.reshape(frames.shape[0], -1).any(axis=1)
        out[:, rs, cs] = fill
    result.frames_changed = int(changed_frames.sum())
    result.changed = result.pixels_changed > 0
    return out, result


def redact(ds: Dataset, regions: Iterable[Region], decoded: Decoded | None = None) -> tuple[Redaction, Decoded]:
    """Blank `regions` in every frame of `ds`'s pixels, in place. Pixel data and markers
    (BurnedInAnnotation=NO, code 113101 Clean Pixel Data) change only if a pixel changed.
    Returns what happened and the (possibly new) decoded pixels. Raises PixelDecodeError."""
    if decoded is None:
        decoded = decode(ds)
        frames, result = blank_regions(decoded.frames, regions, black_value(decoded, ds), in_place=True)
    else:  # the caller's array stays as it was
        frames, result = blank_regions(decoded.frames, regions, black_value(decoded, ds))
    if not result.changed:
        return result, decoded
    result.transfer_syntax = encode(ds, decoded, frames)
    ds.BurnedInAnnotation = "NO"
    add_method_code(ds, CLEAN_PIXEL_DATA)
    return result, Decoded(frames, decoded.photometric, decoded.bits_stored, result.transfer_syntax, decoded.lossy)
