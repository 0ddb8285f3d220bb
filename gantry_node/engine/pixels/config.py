"""The `pixels:` section of the node's YAML configuration (documented in docs/pixels.md).

    pixels:
      rules: [...]                 # machine rules, tried first, in order
      rules_files: [site.yaml]     # more rule files, tried next (relative to the config file)
      include_library: true        # then the shipped CTP-derived library
      unknown_device: quarantine   # or "ocr": let the OCR gate decide
      suspect:
        modalities: [US, SC, XA, ES]
        screen_capture_sop_classes: true
        ctp_heuristic: true
      ocr:
        enabled_modalities: [US, SC]
        min_confidence: 60
        language: eng
        max_frames: 3
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gantry_node.engine.pixels.expr import Expr, RuleError
from gantry_node.engine.pixels.library import library_rules, text_heuristic
from gantry_node.engine.pixels.rules import Rule, rules_from_list
from gantry_node.engine.pixels.suspect import DEFAULT_TEXT_MODALITIES, SCREEN_CAPTURE_SOP_CLASSES

TOP_KEYS = {"rules", "rules_files", "include_library", "unknown_device", "suspect", "ocr"}
OCR_KEYS = {"enabled_modalities", "min_confidence", "language", "max_frames"}
SUSPECT_KEYS = {"modalities", "screen_capture_sop_classes", "ctp_heuristic"}
UNKNOWN_DEVICE = ("quarantine", "ocr")


class PixelConfigError(ValueError):
    """A bad `pixels:` section; the message names the key (e.g. pixels.rules[3].regions[0])."""


@dataclass(frozen=True)
class OcrConfig:
    enabled_modalities: tuple[str, ...] = ("US", "SC")
    min_confidence: float = 60.0
    language: str = "eng"
    max_frames: int = 3  # frames read per image: all when there are this many or fewer, else spread


@dataclass(frozen=True)
class PixelConfig:
    rules: tuple[Rule, ...] = field(default_factory=library_rules)
    unknown_device: str = "quarantine"
    suspect_modalities: tuple[str, ...] = DEFAULT_TEXT_MODALITIES
    suspect_sop_classes: tuple[str, ...] = SCREEN_CAPTURE_SOP_CLASSES
    heuristic: Expr | None = field(default_factory=text_heuristic)
    ocr: OcrConfig = field(default_factory=OcrConfig)


RulesFileReader = Callable[[Path, str], list[Rule]]


def parse_pixels_section(doc: Mapping | None, where: str = "pixels", base_dir: str | Path | None = None,
                         read_rules_file: RulesFileReader | None = None) -> PixelConfig:
    """Validate the `pixels:` mapping (None means all defaults). `base_dir` resolves relative
    rules_files (the directory of the config file; default: the working directory), which
    `read_rules_file` reads (the core reads no files: gantry_node.io.pixel_files passes its reader)."""
    if doc is None:
        return PixelConfig()
    if not isinstance(doc, Mapping):
        raise PixelConfigError(f"{where}: must be a mapping")
    _only(doc, TOP_KEYS, where)
    try:
        rules: list[Rule] = rules_from_list(doc["rules"], f"{where}.rules") if "rules" in doc else []
        for i, name in enumerate(_list(doc, "rules_files", where, [])):
            if not isinstance(name, str) or not name:
                raise PixelConfigError(f"{where}.rules_files[{i}]: must be a file path")
            if read_rules_file is None:
                raise PixelConfigError(f"{where}.rules_files: rule files are read through gantry_node.io.pixel_files")
            path = Path(name) if Path(name).is_absolute() or base_dir is None else Path(base_dir) / name
            rules += read_rules_file(path, f"{where}.rules_files[{i}] ({name})")
    except RuleError as exc:
        raise PixelConfigError(str(exc)) from None
    if _bool(doc, "include_library", where, True):
        rules += library_rules()
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise PixelConfigError(f"{where}: rule id {rule.id!r} is used twice (ids must be unique across files)")
        seen.add(rule.id)

    unknown = doc.get("unknown_device", "quarantine")
    if unknown not in UNKNOWN_DEVICE:
        raise PixelConfigError(f"{where}.unknown_device: must be one of {', '.join(UNKNOWN_DEVICE)}, not {unknown!r}")

    suspect = doc.get("suspect") or {}
    if not isinstance(suspect, Mapping):
        raise PixelConfigError(f"{where}.suspect: must be a mapping")
    _only(suspect, SUSPECT_KEYS, f"{where}.suspect")
    modalities = _modalities(suspect, "modalities", f"{where}.suspect", DEFAULT_TEXT_MODALITIES)
    sop_classes = SCREEN_CAPTURE_SOP_CLASSES if _bool(suspect, "screen_capture_sop_classes",
                                                      f"{where}.suspect", True) else ()
    heuristic = text_heuristic() if _bool(suspect, "ctp_heuristic", f"{where}.suspect", True) else None

    ocr_doc = doc.get("ocr") or {}
    if not isinstance(ocr_doc, Mapping):
        raise PixelConfigError(f"{where}.ocr: must be a mapping")
    _only(ocr_doc, OCR_KEYS, f"{where}.ocr")
    confidence = ocr_doc.get("min_confidence", 60)
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 100:
        raise PixelConfigError(f"{where}.ocr.min_confidence: must be a number from 0 to 100")
    language = ocr_doc.get("language", "eng")
    if not isinstance(language, str) or not language.replace("+", "").replace("_", "").isalnum():
        raise PixelConfigError(f"{where}.ocr.language: must be a tesseract language code such as eng or eng+deu")
    max_frames = ocr_doc.get("max_frames", 3)
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise PixelConfigError(f"{where}.ocr.max_frames: must be a whole number >= 1")
    ocr = OcrConfig(_modalities(ocr_doc, "enabled_modalities", f"{where}.ocr", ("US", "SC")),
                    float(confidence), language, max_frames)
    return PixelConfig(tuple(rules), unknown, modalities, sop_classes, heuristic, ocr)


def _only(doc: Mapping, allowed: set[str], where: str) -> None:
    for key in doc:
        if key not in allowed:
            raise PixelConfigError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _list(doc: Mapping, key: str, where: str, default: list) -> list:
    value = doc.get(key, default)
    if value is None:
        return default
    if not isinstance(value, list):
        raise PixelConfigError(f"{where}.{key}: must be a list")
    return value


def _bool(doc: Mapping, key: str, where: str, default: bool) -> bool:
    value = doc.get(key, default)
    if not isinstance(value, bool):
        raise PixelConfigError(f"{where}.{key}: must be true or false")
    return value


def _modalities(doc: Mapping, key: str, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
    values: Any = _list(doc, key, where, list(default))
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip().isalnum() or len(v.strip()) > 16:
            raise PixelConfigError(f"{where}.{key}[{i}]: must be a modality code such as US")
        out.append(v.strip().upper())
    return tuple(out)
