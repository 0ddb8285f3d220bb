"""The session's unified configuration file: the policy (the "PHI tags") and the machine
rules (the pixels: section of the node's configuration), in one YAML.

    policy:                       # gantry_node.engine.deid policy: options, date_shift_days, overrides
      options: {...}
      overrides: {SeriesDescription: keep}
    pixels:                       # the node's pixels: section (docs/pixels.md)
      unknown_device: quarantine
      rules:
      - id: device-001 ...        # one per device of the inventory, regions to fill in

scaffold_text() writes it from the inventory; parse_config() validates it with errors that
name the file and the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gantry_node.engine.deid import OPTIONS, Policy, PolicyError, policy_from_mapping
from gantry_node.engine.deid.policy import OverrideKey
from gantry_node.engine.pixels.config import PixelConfig, PixelConfigError
from gantry_node.io.pixel_files import read_pixels_section
from gantry_node.offline.cohort import Device

TOP_KEYS = ("policy", "pixels")


class ConfigError(ValueError):
    """A bad session configuration; the message names the file and the key."""


def policy_to_mapping(policy: Policy) -> dict[str, Any]:
    """The policy as its YAML form (policy_from_mapping(policy_to_mapping(p)) == p)."""
    overrides: dict[str, Any] = {}
    for key, override in sorted(policy.overrides.items(), key=lambda kv: _key_text(kv[0])):
        overrides[_key_text(key)] = {"replace": override.value} if override.action == "replace" else override.action
    return {"options": {o: o in policy.options for o in OPTIONS},
            "date_shift_days": list(policy.date_shift_days),
            "overrides": overrides,
            "pseudonymize_patient_name": policy.pseudonymize_patient_name,
            "not_identifying": list(policy.not_identifying)}


def _key_text(key: OverrideKey) -> str:
    if key.is_private:
        return f"({key.group:04X},xx{key.element:02X}) {key.creator}"
    return f"({key.tag >> 16:04X},{key.tag & 0xFFFF:04X})"


def policy_fingerprint(policy: Policy) -> str:
    return hashlib.sha256(json.dumps(policy_to_mapping(policy), sort_keys=True).encode()).hexdigest()[:16]


def text_fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def device_rule_id(index: int) -> str:
    return f"device-{index:03d}"


def scaffold_text(policy: Policy, devices: list[Device], sizes: dict[tuple, list[tuple]],
                  previews: dict[str, str]) -> str:
    """The configuration YAML: the policy in force, then one machine rule per device with
    `regions` left empty (null: a file with an unfilled entry does not load)."""
    head = [
        "# gantry-node session configuration: the policy (PHI tags) and one machine rule per device.",
        "# policy: options on/off, date_shift_days, overrides (tag: keep | remove | empty |",
        "#   pseudonymize | {replace: VALUE}). pixels: the node's pixels: section (docs/pixels.md).",
        "# Fill in `regions` for each device: [[x, y, width, height], ...] in pixels from the top-left",
        "# corner; `regions: []` only for a device known to burn no text into its images. Delete an",
        "# entry to leave a device without a rule: its images that may carry text are held back.",
    ]
    body = yaml.safe_dump({"policy": policy_to_mapping(policy)}, sort_keys=False, width=110).splitlines()
    out = head + body + ["pixels:", "  unknown_device: quarantine", "  include_library: true", "  rules:"]
    for i, device in enumerate(devices, 1):
        rule_id = device_rule_id(i)
        name = " ".join(p for p in (device.manufacturer, device.model) if p) or "unknown device"
        shapes = ", ".join(f"{r or '?'}x{c or '?'}" for r, c in sizes.get((device.manufacturer, device.model,
                                                                          device.serial), []))
        out.append(f"  - id: {rule_id}")
        out.append(f"    name: {json.dumps(name + (' S/N ' + device.serial if device.serial else ''))}")
        out.append(f"    # instances: {device.instances}; modalities: {', '.join(device.modalities) or '?'}; "
                   f"image sizes: {shapes or '?'}; BurnedInAnnotation ever YES: "
                   f"{'yes' if device.burned_in_annotation else 'no'}")
        if rule_id in previews:
            out.append(f"    # preview of a sample image: {previews[rule_id]}")
        out.append("    match:")
        out.append("      all:")
        out.append(f"      - {{tag: Manufacturer, equals: {json.dumps(device.manufacturer)}}}")
        out.append(f"      - {{tag: ManufacturerModelName, equals: {json.dumps(device.model)}}}")
        if device.serial:
            out.append(f"      - {{tag: DeviceSerialNumber, equals: {json.dumps(device.serial)}}}")
        out.append("    regions:    # TODO: e.g. [[0, 0, 640, 40]]")
    if not devices:
        out[-1] = "  rules: []"
    return "\n".join(out) + "\n"


def parse_config(path: str | Path) -> tuple[Policy, PixelConfig, str]:
    """(policy, pixel configuration, the file's text) or ConfigError naming the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config_text(text, path), text


def parse_config_text(text: str, path: Path) -> tuple[Policy, PixelConfig]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: expected a mapping with {' and '.join(TOP_KEYS)}")
    for key in doc:
        if key not in TOP_KEYS:
            raise ConfigError(f"{path}: {key}: unknown key (allowed: {', '.join(TOP_KEYS)})")
    try:
        policy = policy_from_mapping(doc.get("policy"), f"{path}: policy")
        pixels = read_pixels_section(doc.get("pixels"), f"{path}: pixels", base_dir=path.parent)
    except (PolicyError, PixelConfigError) as exc:
        raise ConfigError(str(exc)) from None
    return policy, pixels
