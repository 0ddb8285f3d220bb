"""A small synthetic cohort with planted PHI for the Session tests (gantry_node.testing).

Two patients: DOE^JANE^Q (CT series of thin and thick slices, an ultrasound from a device
that gets a machine rule, with her name and MRN burned into the pixels) and ROE^RICHARD
(MR, and an ultrasound from a device that gets no rule, with text burned in). Plus a text
file and a truncated CT, which import reports and skips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.pixels import set_pixel_data

from gantry_node.testing import Study
from gantry_node.testing.text import draw_text

PLANTED = ["DOE^JANE^Q", "MRN12345", "19700214", "ACC998877", "ROE^RICHARD", "MRN67890", "19551103", "ACC445566",
           "HOUSE^GREGORY", "WELBY^MARCUS", "ST ELSEWHERE HOSPITAL", "CT3-SPRINGFIELD"]
RULE_DEVICE = ("Acme Sonics", "Model T", "SN-US-1")
NO_RULE_DEVICE = ("Other Sonics", "Model Z", "SN-US-2")
TEXT_REGION = [0, 0, 260, 90]  # covers the burned-in text of burned_us (x < 240, y < 80)


def burned_us(series, device: tuple[str, str, str], lines: list[str]):
    """A 480x640 grayscale ultrasound from `device` with `lines` burned in at the top left."""
    ds = series.us_image(rows=480, columns=640).build()
    rng = np.random.default_rng(7)
    arr = np.zeros((480, 640), np.uint8)
    arr[150:450, 100:540] = rng.integers(0, 120, (300, 440))
    arr = draw_text(arr, lines, 10, 10, size=16)
    set_pixel_data(ds, arr, "MONOCHROME2", 8, generate_instance_uid=False)
    ds.Manufacturer, ds.ManufacturerModelName, ds.DeviceSerialNumber = device
    return ds


def make_cohort(root: Path) -> dict[str, list[str]]:
    """Write the cohort under `root`; returns the original SOP Instance UIDs by role."""
    root.mkdir(parents=True, exist_ok=True)
    jane = (Study.for_patient(name="DOE^JANE^Q", patient_id="MRN12345", birth_date="19700214", sex="F")
            .on("20240311").accession("ACC998877").described("CT CHEST W CONTRAST").referred_by("WELBY^MARCUS"))
    rich = (Study.for_patient(name="ROE^RICHARD", patient_id="MRN67890", birth_date="19551103", sex="M")
            .on("20240402").accession("ACC445566").described("MR BRAIN"))
    roles: dict[str, list[str]] = {"thin_ct": [], "thick_ct": [], "mr": [], "us_rule": [], "us_no_rule": []}
    thin = jane.series("CT")
    for i in range(3):
        ds = thin.ct_image(rows=64, columns=64).with_all_phi().build()
        ds.save_as(root / f"ct_thin_{i}.dcm", enforce_file_format=True)
        roles["thin_ct"].append(str(ds.SOPInstanceUID))
    thick = jane.series("CT")
    for i in range(2):
        ds = thick.ct_image(rows=64, columns=64).with_physicians().with_institution().build()
        ds.SliceThickness = 5.0
        ds.save_as(root / f"ct_thick_{i}.dcm", enforce_file_format=True)
        roles["thick_ct"].append(str(ds.SOPInstanceUID))
    us = burned_us(jane.series("US"), RULE_DEVICE, ["DOE^JANE^Q", "MRN12345"])
    us.save_as(root / "us_rule.dcm", enforce_file_format=True)
    roles["us_rule"].append(str(us.SOPInstanceUID))
    mr_series = rich.series("MR")
    for i in range(2):
        ds = mr_series.mr_image(rows=64, columns=64).with_station().build()
        ds.save_as(root / f"mr_{i}.dcm", enforce_file_format=True)
        roles["mr"].append(str(ds.SOPInstanceUID))
    us2 = burned_us(rich.series("US"), NO_RULE_DEVICE, ["ROE^RICHARD", "MRN67890"])
    us2.save_as(root / "us_no_rule.dcm", enforce_file_format=True)
    roles["us_no_rule"].append(str(us2.SOPInstanceUID))
    (root / "notes.txt").write_text("not an image")
    data = (root / "ct_thin_0.dcm").read_bytes()
    (root / "sub").mkdir()
    (root / "sub" / "truncated.dcm").write_bytes(data[: len(data) - 3000])
    return roles


def fill_in_config(path: Path) -> None:
    """What the editor does with the scaffold: regions for the ruled ultrasound, [] for the CT
    and MR devices, and the other ultrasound's entry deleted (a device without a rule)."""
    import yaml

    doc = yaml.safe_load(path.read_text())
    rules = []
    for rule in doc["pixels"]["rules"]:
        names = [c.get("equals") for c in rule["match"]["all"]]
        if RULE_DEVICE[0] in names:
            rule["regions"] = [TEXT_REGION]
        elif NO_RULE_DEVICE[0] in names:
            continue
        else:
            rule["regions"] = []
        rules.append(rule)
    doc["pixels"]["rules"] = rules
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
