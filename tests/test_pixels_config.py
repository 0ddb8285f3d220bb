"""The `pixels:` configuration section, the `gantry-node rules` commands and the Session API."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from gantry_node.engine.pixels.config import PixelConfigError
from gantry_node.engine.pixels.library import library_rules
from gantry_node.io.pixel_files import read_pixels_section as parse_pixels_section
from tests.support.pixels import data_path

ANONYMIZER = Path("/work/shared/reference/ctp/DicomPixelAnonymizer.script")
RULE = {"id": "site-1", "match": {"tag": "Modality", "equals": "US"}, "regions": [[0, 0, 10, 10]]}


def test_defaults():
    config = parse_pixels_section(None)
    assert config.rules == library_rules() and len(config.rules) == 52
    assert config.unknown_device == "quarantine"
    assert config.ocr.enabled_modalities == ("US", "SC")
    assert config.suspect_modalities == ("US", "SC", "XA", "ES")
    assert config.heuristic is not None


def test_site_rules_come_before_the_library_and_files_after_inline(tmp_path):
    (tmp_path / "more.yaml").write_text(yaml.safe_dump({"rules": [dict(RULE, id="from-file")]}))
    config = parse_pixels_section({"rules": [RULE], "rules_files": ["more.yaml"]}, base_dir=tmp_path)
    assert [r.id for r in config.rules[:2]] == ["site-1", "from-file"]
    assert config.rules[2:] == library_rules()
    alone = parse_pixels_section({"rules": [RULE], "include_library": False})
    assert [r.id for r in alone.rules] == ["site-1"]


@pytest.mark.parametrize(("doc", "message"), [
    ({"rulez": []}, r"pixels.rulez: unknown key"),
    ({"rules": [dict(RULE, regions=[[0, 0, 10, 10], [0, 0, 0, 5]])]},
     r"pixels.rules\[0\].regions\[1\]: width must be > 0"),
    ({"rules": [RULE, dict(RULE, id="b"), dict(RULE, id="c", regions=[[0, 0, 1, -1]])]},
     r"pixels.rules\[2\].regions\[0\]: height must be > 0"),
    ({"rules": [RULE, dict(RULE, id="ctp-001")]}, "rule id 'ctp-001' is used twice"),
    ({"rules_files": ["/nonexistent/rules.yaml"]}, r"pixels.rules_files\[0\].*cannot read"),
    ({"unknown_device": "pass"}, r"pixels.unknown_device: must be one of quarantine, ocr"),
    ({"ocr": {"min_confidence": 101}}, r"pixels.ocr.min_confidence"),
    ({"ocr": {"enabled_modalities": "US"}}, r"pixels.ocr.enabled_modalities: must be a list"),
    ({"ocr": {"language": "eng; rm -rf"}}, r"pixels.ocr.language"),
    ({"ocr": {"max_frames": 0}}, r"pixels.ocr.max_frames"),
    ({"ocr": {"engine": "x"}}, r"pixels.ocr.engine: unknown key"),
    ({"suspect": {"ctp_heuristic": "yes"}}, r"pixels.suspect.ctp_heuristic: must be true or false"),
    ({"include_library": 1}, r"pixels.include_library: must be true or false"),
    ([], r"pixels: must be a mapping"),
])
def test_bad_config_names_the_key(doc, message):
    with pytest.raises(PixelConfigError, match=message):
        parse_pixels_section(doc)


def test_documentation_covers_every_key():
    doc = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    from gantry_node.engine.pixels.config import OCR_KEYS, SUSPECT_KEYS, TOP_KEYS

    keys = sorted(TOP_KEYS) + [f"ocr.{k}" for k in OCR_KEYS] + [f"suspect.{k}" for k in SUSPECT_KEYS]
    for key in keys:
        assert f"| `{key}` |" in doc, f"README.md does not document pixels key {key} in its key table"
    for command in ("rules import-ctp", "rules scaffold", "rules preview"):
        assert command in doc


# --- commands ----------------------------------------------------------------------------------

def test_import_ctp_command(run_cli, tmp_path):
    out = tmp_path / "ctp.yaml"
    proc = run_cli("rules", "import-ctp", ANONYMIZER, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "converted 52 signature(s)" in proc.stderr
    assert len(yaml.safe_load(out.read_text())["rules"]) == 52
    bad = tmp_path / "bad.script"
    bad.write_text('{ Rows.isGreaterThan(512) }\n(0,0,1,1)')
    proc = run_cli("rules", "import-ctp", bad)
    assert proc.returncode == 2 and "line 1: cannot read" in proc.stderr


def test_scaffold_and_preview_commands(run_cli, tmp_path):
    sample = tmp_path / "sample"
    sample.mkdir()
    for name in ("OBXXXX1A.dcm", "OBXXXX1A_2frame.dcm", "gdcm-US-ALOKA-16.dcm"):
        shutil.copy(data_path(name), sample / name)
    proc = run_cli("rules", "scaffold", sample)
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(proc.stdout)
    names = {r["name"]: r for r in doc["rules"]}
    assert set(names) == {"Philips Medical Systems CX50 600x800", "ALOKA CO., LTD. SSD-4000 480x640"}
    assert "# instances: 2; modalities: US; BurnedInAnnotation ever YES: no" in proc.stdout
    assert names["ALOKA CO., LTD. SSD-4000 480x640"]["regions"] is None  # to fill in
    # an unfilled scaffold does not load: nothing is forgotten silently
    scaffold = tmp_path / "site.yaml"
    scaffold.write_text(proc.stdout)
    proc = run_cli("rules", "preview", scaffold, "--sample", sample, "--out", tmp_path / "png")
    assert proc.returncode == 2 and "regions: must be a list" in proc.stderr
    # filled in: one PNG per machine, with the region drawn
    doc["rules"][1]["regions"] = [[0, 0, 640, 26]]
    doc["rules"][0]["regions"] = [[0, 0, 800, 59]]
    scaffold.write_text(yaml.safe_dump({"pixels": {"rules": doc["rules"]}}))
    proc = run_cli("rules", "preview", scaffold, "--sample", sample, "--out", tmp_path / "png")
    assert proc.returncode == 0, proc.stderr
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == ["site-001.png", "site-002.png"]
    from PIL import Image

    with Image.open(tmp_path / "png" / "site-002.png") as image:
        assert image.size == (640, 480)
        red = image.getpixel((320, 25))
        assert red[0] > 150 and red[1] < 100  # region outline drawn in red
        assert image.getpixel((320, 200))[0] == image.getpixel((320, 200))[1]  # elsewhere grey


def test_session_pixel_methods(tmp_path, secret_file):
    from gantry_node import Session

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(data_path("OBXXXX1A.dcm"), folder / "a.dcm")
    shutil.copy(data_path("gdcm-US-ALOKA-16.dcm"), folder / "b.dcm")
    with Session(tmp_path / "gantry.db", secret_file=secret_file) as session:
        session.ingest(folder)
        path = session.setup_config(tmp_path / "site.yaml")
        assert Session.scaffold_config is Session.setup_config  # the alias
        text = path.read_text()
        assert text.count("  - id: device-") == 2
        doc = yaml.safe_load(text)
        for rule in doc["pixels"]["rules"]:
            rule["regions"] = [[0, 0, 800, 59]] if "CX50" in rule["name"] else [[0, 0, 640, 26]]
        (tmp_path / "site.yaml").write_text(yaml.safe_dump(doc))
        session.load_config(tmp_path / "site.yaml")
        assert [r.id for r in session.pixel_config.rules[:2]] == ["device-001", "device-002"]
        session.apply_remediation()
        report = session.redact_pixels()
        assert report.done == 2 and report.held_back == {}
        assert len(session.export(tmp_path / "clean").written) == 2
        assert Session.execute_config is Session.redact_pixels


def test_session_uses_the_pixel_defaults_and_holds_back_unknown_devices(tmp_path, secret_file):
    from gantry_node import Session

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(data_path("gdcm-US-ALOKA-16.dcm"), folder / "b.dcm")
    with Session(tmp_path / "gantry.db", secret_file=secret_file) as session:
        session.ingest(folder)
        session.apply_remediation()
        export = session.export(tmp_path / "clean")  # pixels not handled yet: held back
        assert export.written == [] and "run execute_config" in export.held_back[1]
        (reason,) = session.redact_pixels().held_back.values()
        assert "no machine rule matches" in reason
        assert "no machine rule matches" in session.export(tmp_path / "clean").held_back[1]
