"""File-level operations behind `gantry-node rules ...` and the Session pixel methods.

The pure work lives in the other modules; here files are read and written."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pydicom
import yaml

from gantry_node.engine.deid import Keys
from gantry_node.engine.pixels.codec import PixelDecodeError, decode
from gantry_node.engine.pixels.config import PixelConfig, PixelConfigError, parse_pixels_section
from gantry_node.engine.pixels.ctp import parse_anonymizer_script, text_heuristic_from_filter
from gantry_node.engine.pixels.device import DEVICE_KEYS, device_key
from gantry_node.engine.pixels.expr import RuleError, expr_to_mapping
from gantry_node.engine.pixels.library import CTP_ORIGIN, HEURISTIC_FILE, LIBRARY_FILE
from gantry_node.engine.pixels.ocr import luminance
from gantry_node.engine.pixels.rules import Rule, first_match, rules_from_list, rules_to_yaml
from gantry_node.io.yamlfile import read_yaml


def load_rules_file(path: str | Path, where: str | None = None) -> list[Rule]:
    """Rules from a YAML file with a top-level `rules:` list. Errors name the file and rule."""
    path = Path(path)
    where = where or str(path)
    doc = read_yaml(path, RuleError, where)
    if not isinstance(doc, Mapping) or "rules" not in doc:
        raise RuleError(f"{where}: expected a mapping with a 'rules:' list")
    return rules_from_list(doc["rules"], f"{where}: rules", id_prefix=path.stem)


def read_pixels_section(doc: Mapping | None, where: str = "pixels", base_dir: str | Path | None = None) -> PixelConfig:
    """The `pixels:` settings, with the rule files they name read from disk (relative to base_dir)."""
    return parse_pixels_section(doc, where, base_dir, read_rules_file=load_rules_file)


def import_ctp(path: str | Path, as_filter: bool = False) -> tuple[str, int]:
    """Convert a CTP script file to YAML text; returns (yaml, number of signatures)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    if as_filter:
        header = CTP_ORIGIN.format(name=path.name, out=HEURISTIC_FILE).replace("import-ctp", "import-ctp --filter")
        header += ("\nmay_carry_text is the NEGATION of the CTP filter, which selects images without "
                   "burned-in text.")
        body = yaml.safe_dump({"may_carry_text": expr_to_mapping(text_heuristic_from_filter(text))},
                              sort_keys=False)
        return "".join(f"# {ln}".rstrip() + "\n" for ln in header.splitlines()) + body, 1
    rules = parse_anonymizer_script(text, source=f"CTP {path.name}")
    return rules_to_yaml(rules, CTP_ORIGIN.format(name=path.name, out=LIBRARY_FILE)), len(rules)


# --- configuration ------------------------------------------------------------------------

def load_pixel_config(path: str | Path | None) -> PixelConfig:
    """A PixelConfig from a YAML file: a node config with a `pixels:` section, or a file that
    is itself a pixels section (e.g. a bare `rules:` list). None gives the defaults."""
    if path is None:
        return parse_pixels_section(None)
    path = Path(path)
    doc = read_yaml(path, PixelConfigError)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise PixelConfigError(f"{path}: expected a mapping")
    if "pixels" in doc:
        return read_pixels_section(doc["pixels"], f"{path}: pixels", base_dir=path.parent)
    return read_pixels_section(doc, str(path), base_dir=path.parent)


# --- scaffold -----------------------------------------------------------------------------



def device_table(headers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per device (manufacturer, model, image size): instance count, modalities, and
    whether BurnedInAnnotation was ever YES."""
    devices: dict[tuple, dict[str, Any]] = {}
    for h in headers:
        key = tuple(_text(h.get(k)) for k in DEVICE_KEYS)
        row = devices.setdefault(key, {**dict(zip(DEVICE_KEYS, key, strict=True)), "instances": 0,
                                       "modalities": set(), "burned_in_yes": False})
        row["instances"] += 1
        if _text(h.get("Modality")):
            row["modalities"].add(_text(h.get("Modality")))
        if _text(h.get("BurnedInAnnotation")).upper() == "YES":
            row["burned_in_yes"] = True
    return sorted(devices.values(), key=lambda r: (-r["instances"], tuple(r[k] for k in DEVICE_KEYS)))


def scaffold_yaml(headers: Iterable[Mapping[str, Any]], keys: Keys | None = None) -> tuple[str, int]:
    """Rules YAML with one entry per device, regions left empty (null) to be filled in: a rules
    file with an unfilled entry does not load, so nothing is forgotten silently. With `keys` (the
    node's secret) each entry names the device key that the node's quarantine reasons use."""
    rows = device_table(headers)
    out = [
        "# gantry-node rules scaffold: one entry per device seen.",
        "# Fill in `regions` for each device: [x, y, width, height] in pixels from the top-left corner",
        "# (x = column, y = row). Use `regions: []` only for a device known to burn no text into images.",
        "# Check the result with: gantry-node rules preview THIS_FILE --sample FOLDER",
        "# Device keys (d-...) are those of the node's quarantine reasons" if keys is not None else
        "# (pass --secret-file, the node's secret, to see each device's key d-... as quarantine reasons name it)",
        "rules:",
    ]
    for i, row in enumerate(rows, 1):
        name = " ".join(p for p in (row["Manufacturer"], row["ManufacturerModelName"]) if p) or "unknown device"
        size = f"{row['Rows'] or '?'}x{row['Columns'] or '?'}"
        out.append(f"- id: site-{i:03d}")
        out.append(f"  name: {json.dumps(f'{name} {size}')}")
        if keys is not None:
            out.append(f"  # device key: {device_key(row, keys)}")
        out.append(f"  # instances: {row['instances']}; modalities: {', '.join(sorted(row['modalities'])) or '?'}; "
                   f"BurnedInAnnotation ever YES: {'yes' if row['burned_in_yes'] else 'no'}")
        out.append("  match:")
        out.append("    all:")
        for key in ("Manufacturer", "ManufacturerModelName"):
            out.append(f"    - {{tag: {key}, equals: {json.dumps(row[key])}}}")
        for key in ("Rows", "Columns"):
            if row[key].isdigit():
                out.append(f"    - {{tag: {key}, eq: {row[key]}}}")
        out.append("  regions:    # TODO: e.g. [[0, 0, 640, 40]]")
    if not rows:
        out[-1] = "rules: []"
    return "\n".join(out) + "\n", len(rows)


def read_headers(folder: str | Path) -> list[dict[str, Any]]:
    keys = (*DEVICE_KEYS, "Modality", "BurnedInAnnotation")
    headers = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(keys))
        except Exception:  # noqa: BLE001 -- not DICOM: not a device
            continue
        if "Modality" in ds or "Manufacturer" in ds:
            headers.append({k: ds.get(k) for k in keys})
    return headers


def scaffold_config(folder: str | Path, keys: Keys | None = None) -> tuple[str, int]:
    return scaffold_yaml(read_headers(folder), keys)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


# --- preview ------------------------------------------------------------------------------

def preview_rules(config_path: str | Path, out_dir: str | Path, sample_dir: str | Path | None = None) -> list[Path]:
    """One PNG per rule that matches a sample image: the image (first frame) with the rule's
    regions filled translucent red and outlined. Rules without a matching sample are skipped."""
    from gantry_node.io.durable import write_atomic

    config = load_pixel_config(config_path)
    samples = sorted(p for p in Path(sample_dir).rglob("*") if p.is_file()) if sample_dir else []
    written: list[Path] = []
    done: set[str] = set()
    for path in samples:
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # noqa: BLE001 -- not DICOM
            continue
        if "PixelData" not in ds:
            continue
        rule = first_match(config.rules, ds)
        if rule is None or rule.id in done:
            continue
        try:
            decoded = decode(ds)
        except PixelDecodeError:
            continue
        png = render_preview(decoded.frames[0], decoded.photometric, ds, rule.regions)
        target = Path(out_dir) / f"{_safe_name(rule.id)}.png"
        written.append(write_atomic(png, target, 0o644))
        done.add(rule.id)
    return written


def render_preview(frame, photometric: str, ds, regions) -> bytes:
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    gray = luminance(frame, photometric, ds)
    image = Image.fromarray(np.stack([gray] * 3, axis=-1)).convert("RGBA")
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for region in regions:
        clipped = region.clip(gray.shape[0], gray.shape[1])
        if clipped is None:
            continue
        rs, cs = clipped
        box = (cs.start, rs.start, cs.stop - 1, rs.stop - 1)
        draw.rectangle(box, fill=(255, 0, 0, 90), outline=(255, 0, 0, 255), width=2)
    buffer = io.BytesIO()
    Image.alpha_composite(image, overlay).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "rule"
