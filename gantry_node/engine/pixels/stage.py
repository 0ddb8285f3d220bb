"""The pixel stage of the pipeline: machine rule -> redact -> OCR gate.

    engine = Engine(policy, keys, pixel_stage=make_pixel_stage(parse_pixels_section(doc.get("pixels")), keys))

For each instance with Pixel Data:
1. The first rule whose signature matches the ORIGINAL dataset (de-identification removes
   attributes such as DeviceSerialNumber) names the regions to blank.
2. Whether the image may carry burned-in text is judged on the original too
   (BurnedInAnnotation=YES, a suspect modality, a screen-capture SOP class, CTP's heuristic).
   Such an image with no matching rule is quarantined (unknown_device: quarantine).
3. Bits of the pixel cells outside the stored value (embedded overlays in the bits above High
   Bit, and the overlay planes the original's 60xx elements declare) are cleared
   (pixels.highbits); lossy data with such bits is quarantined.
4. The regions are blanked in every frame of the de-identified dataset (decoded pixels).
5. The OCR gate reads what is left, for suspect images of the modalities it is enabled for;
   any finding quarantines the instance.
6. Post-check: no bit outside the stored value is left set (native data: one numpy pass;
   compressed data the stage rewrote: decoded again).
Work notes (no PHI) go to work.notes["pixels"]. Reasons name attributes, counts and the
device's key, never a value read from the data set: the device is named by `device_key`, a
keyed hash of its manufacturer, model and image size, which `gantry-node rules scaffold`
prints next to each device it lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gantry_node.engine.deid import Change, Keys
from gantry_node.engine.pipeline import Quarantine, Work
from gantry_node.engine.pixels.codec import Decoded, PixelDecodeError, decode, has_pixels
from gantry_node.engine.pixels.config import PixelConfig
from gantry_node.engine.pixels.device import device_key
from gantry_node.engine.pixels.highbits import HighBitsError, clear_high_bits, high_bits_problem
from gantry_node.engine.pixels.ocr import judge, luminance, read_words, sample_frames
from gantry_node.engine.pixels.redact import redact
from gantry_node.engine.pixels.rules import RuleMatcher
from gantry_node.engine.pixels.suspect import SCREEN_CAPTURE_SOP_CLASSES, suspect_reasons


def make_pixel_stage(config: PixelConfig, keys: Keys | None = None) -> Callable[[Work], None]:
    """The callable for `Engine.pixel_stage`. `keys` (the engine's) key the device names in
    reasons; without them the device key is an unkeyed hash."""

    matcher = RuleMatcher(config.rules)

    def pixel_stage(work: Work) -> None:
        run_pixel_stage(work, config, matcher, keys)

    return pixel_stage


def run_pixel_stage(work: Work, config: PixelConfig, matcher: RuleMatcher | None = None,
                    keys: Keys | None = None) -> None:
    original, ds = work.original, work.dataset
    notes: dict[str, Any] = {}
    work.notes["pixels"] = notes
    if ds is None or not has_pixels(ds):
        notes["skipped"] = "no pixel data"
        return
    rule = (matcher or RuleMatcher(config.rules)).first_match(original)
    suspect = suspect_reasons(original, config.suspect_modalities, config.suspect_sop_classes, config.heuristic)
    notes["rule"] = rule.id if rule else None
    if rule:
        notes["rule_name"] = rule.name
    notes["suspect"] = suspect
    if rule is None and suspect and config.unknown_device == "quarantine":
        raise Quarantine(
            f"pixels: image may carry burned-in text ({', '.join(suspect)}) and no machine rule matches "
            f"device {device_key(original, keys)}; add a rule for it (`gantry-node rules scaffold FOLDER "
            "--secret-file SECRET` lists each device with its key)", "pixels")

    rewrote = _clear_high_bits(work, notes)
    decoded: Decoded | None = None
    if rule and rule.regions:
        try:
            result, decoded = redact(ds, rule.regions)
        except PixelDecodeError as exc:
            raise Quarantine(f"pixels: {exc}", "pixels") from None
        notes.update(result.notes())
        notes["redacted"] = result.changed

    if suspect and _ocr_wanted(original, rule is None, config):
        count = int(ds.get("NumberOfFrames", 1) or 1)
        frames = sample_frames(count, config.ocr.max_frames)
        if decoded is not None:
            pictures = decoded.frames[frames]
        else:  # nothing was redacted: decode only the frames the gate reads
            decoded = _decode(ds, frames)
            pictures = decoded.frames
        findings, words = [], 0
        for index, picture in zip(frames, pictures, strict=True):
            gray = luminance(picture, decoded.photometric, ds)
            try:
                read = read_words(gray, index, config.ocr.language, config.ocr.min_confidence)
            except Exception as exc:  # noqa: BLE001 -- no OCR means the gate is shut, not open
                raise Quarantine(f"pixels: OCR unavailable ({type(exc).__name__}); the OCR gate fails closed",
                                 "pixels") from None
            words += len(read)
            findings += judge(read, work.identity)
        notes["ocr"] = {"frames": frames, "words": words, "findings": len(findings)}
        if findings:
            shown = "; ".join(f.describe() for f in findings[:5])
            more = f" (+{len(findings) - 5} more)" if len(findings) > 5 else ""
            raise Quarantine(f"pixels: OCR found {shown}{more}", "pixels")

    problem = high_bits_problem(ds, original, compressed_too=rewrote or bool(notes.get("redacted")))
    if problem:
        raise Quarantine(f"pixels: post-check failed: {problem}", "pixels")


def _clear_high_bits(work: Work, notes: dict[str, Any]) -> bool:
    """Step 3; records the rewrite in the notes and the changes. Returns whether Pixel Data changed."""
    try:
        cleared = clear_high_bits(work.dataset, work.original)
    except HighBitsError as exc:
        raise Quarantine(f"pixels: {exc}", "pixels") from None
    if cleared.planes or cleared.values:
        notes.update(cleared.notes())
    if not cleared.values:
        return False
    element = work.dataset["PixelData"]
    vr = element.VR if element.VR in ("OB", "OW") else "OW" if int(work.dataset.BitsAllocated) > 8 else "OB"
    work.changes.append(Change(
        "(7FE0,0010)", element.tag, "PixelData", vr, "C",
        f"pixels: bits outside the stored value cleared in {cleared.frames} frame(s) "
        f"({cleared.values} pixel value(s); embedded overlay or stray bits)"))
    return True


def _decode(ds, frames: list[int]) -> Decoded:
    try:
        return decode(ds, frames)
    except PixelDecodeError as exc:
        raise Quarantine(f"pixels: {exc}", "pixels") from None


def _ocr_wanted(original, unknown: bool, config: PixelConfig) -> bool:
    kinds = {str(original.get("Modality", "") or "").strip().upper()}
    if str(original.get("SOPClassUID", "")) in SCREEN_CAPTURE_SOP_CLASSES:
        kinds.add("SC")
    if unknown and config.unknown_device == "ocr":
        return True
    return bool(kinds & set(config.ocr.enabled_modalities))
