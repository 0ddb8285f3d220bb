"""Signature expressions, machine rules and their YAML form, CTP script import."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydicom.dataset import Dataset, FileMetaDataset

from gantry_node.engine.pixels.ctp import (
    CTPSyntaxError,
    parse_anonymizer_script,
    parse_expression,
    text_heuristic_from_filter,
)
from gantry_node.engine.pixels.expr import RuleError, evaluate, expr_from_mapping, expr_to_mapping
from gantry_node.engine.pixels.library import library_rules, text_heuristic
from gantry_node.engine.pixels.rules import Region, first_match, rules_from_list, rules_to_yaml
from gantry_node.engine.resources import rules_file

CTP_DIR = Path("/work/shared/reference/ctp")
ANONYMIZER = CTP_DIR / "DicomPixelAnonymizer.script"
FILTER = CTP_DIR / "BurnedInPixelsFilter.script"


def device(**values) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.ImplementationVersionName = "MINDRAY_1.0"
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def holds(doc, ds) -> bool:
    return evaluate(expr_from_mapping(doc, "t"), ds)


def test_string_operators_and_case():
    ds = device(Manufacturer="GE MEDICAL SYSTEMS", ImageType=["ORIGINAL", "PRIMARY"])
    assert holds({"tag": "Manufacturer", "equals": "GE MEDICAL SYSTEMS"}, ds)
    assert not holds({"tag": "Manufacturer", "equals": "ge medical systems"}, ds)
    assert holds({"tag": "Manufacturer", "equals": "ge medical systems", "ignore_case": True}, ds)
    assert holds({"tag": "Manufacturer", "contains": "MEDICAL"}, ds)
    assert holds({"tag": "Manufacturer", "startswith": "ge", "ignore_case": True}, ds)
    assert holds({"tag": "Manufacturer", "endswith": "SYSTEMS"}, ds)
    assert holds({"tag": "Manufacturer", "regex": r"^GE\s+MED"}, ds)
    assert holds({"tag": "ImageType", "equals": "ORIGINAL\\PRIMARY"}, ds)  # values joined as in CTP
    assert holds({"tag": "(0008,0070)", "contains": "GE"}, ds)
    assert holds({"tag": "[0008,0070]", "contains": "GE"}, ds)


def test_numbers_compare_as_numbers():
    ds = device(Rows=1000, WindowWidth="80.0")
    assert holds({"tag": "Rows", "gt": 999}, ds)           # as strings "1000" < "999"
    assert not holds({"tag": "Rows", "lt": 999}, ds)
    assert holds({"tag": "Rows", ">=": 1000}, ds) and holds({"tag": "Rows", "<=": 1000}, ds)
    assert holds({"tag": "WindowWidth", "eq": 80}, ds)     # "80.0" == 80
    assert holds({"tag": "Rows", "==": 1000.0}, ds)
    assert not holds({"tag": "Columns", "gt": 0}, ds)      # missing: never numerically true


def test_missing_attribute_reads_empty_and_combinators():
    ds = device(Modality="US")
    assert holds({"tag": "DateOfSecondaryCapture", "equals": ""}, ds)
    assert holds({"all": [{"tag": "Modality", "equals": "US"}, {"not": {"tag": "Rows", "gt": 1}}]}, ds)
    assert holds({"any": [{"tag": "Modality", "equals": "CT"}, {"tag": "Modality", "equals": "US"}]}, ds)
    assert holds({"tag": "ImplementationVersionName", "contains": "MINDRAY"}, ds)  # from file meta


@pytest.mark.parametrize(("doc", "message"), [
    ({"tag": "Rows"}, "exactly one operator"),
    ({"tag": "Rows", "gt": 1, "lt": 9}, "exactly one operator"),
    ({"tag": "NoSuchKeyword", "equals": "x"}, "unknown DICOM keyword 'NoSuchKeyword'"),
    ({"tag": "Rows", "gt": "many"}, "needs a number"),
    ({"tag": "Rows", "like": "x"}, "unknown key 'like'"),
    ({"tag": "Manufacturer", "regex": "("}, "bad regex"),
    ({"all": []}, "non-empty list"),
    ({"all": [{"tag": "Rows", "gt": 1}], "tag": "Rows"}, "cannot be combined"),
    ({"tag": "Rows", "gt": 1, "ignore_case": True}, "not allowed with a numeric operator"),
])
def test_bad_expressions_name_the_problem(doc, message):
    with pytest.raises(RuleError, match=message):
        expr_from_mapping(doc, "rules[0].match")


def test_expression_yaml_round_trip():
    doc = {"all": [{"tag": "Manufacturer", "contains": "GE", "ignore_case": True},
                   {"any": [{"tag": "Rows", "eq": 480}, {"not": {"tag": "(6000,0022)", "regex": "x+"}}]}]}
    assert expr_to_mapping(expr_from_mapping(doc, "t")) == doc


def test_rule_regions_validated_with_their_path():
    base = {"match": {"tag": "Modality", "equals": "US"}}
    with pytest.raises(RuleError, match=r"rules\[0\].regions\[1\]: width must be > 0"):
        rules_from_list([dict(base, regions=[[0, 0, 5, 5], {"x": 0, "y": 0, "width": 0, "height": 4}])], "rules")
    with pytest.raises(RuleError, match=r"rules\[0\].regions\[0\]: x must be >= 0"):
        rules_from_list([dict(base, regions=[[-1, 0, 5, 5]])], "rules")
    with pytest.raises(RuleError, match=r"missing 'regions'"):
        rules_from_list([base], "rules")
    with pytest.raises(RuleError, match="duplicate id"):
        rules_from_list([dict(base, id="a", regions=[]), dict(base, id="a", regions=[])], "rules")


def test_first_match_wins():
    rules = rules_from_list([
        {"id": "narrow", "match": {"all": [{"tag": "Modality", "equals": "US"}, {"tag": "Rows", "eq": 600}]},
         "regions": [[0, 0, 800, 59]]},
        {"id": "broad", "match": {"tag": "Modality", "equals": "US"}, "regions": [[0, 0, 10, 10]]},
    ], "rules")
    assert first_match(rules, device(Modality="US", Rows=600)).id == "narrow"
    assert first_match(rules, device(Modality="US", Rows=480)).id == "broad"
    assert first_match(rules, device(Modality="CT")) is None


def test_region_clip_convention():
    # x is the column, y the row, from the top-left corner; clipped to the image
    assert Region(10, 5, 20, 3).clip(100, 200) == (slice(5, 8), slice(10, 30))
    assert Region(190, 0, 50, 10).clip(100, 200) == (slice(0, 10), slice(190, 200))
    assert Region(300, 0, 5, 5).clip(100, 200) is None


# --- CTP -------------------------------------------------------------------------------------

def test_every_ctp_signature_parses_and_converts():
    rules = parse_anonymizer_script(ANONYMIZER.read_text())
    assert len(rules) == 52  # every signature in the CTP library (counted by hand: 52 '{' blocks)
    assert ANONYMIZER.read_text().count("{") == 52
    assert all(rule.regions for rule in rules)
    assert sum(len(rule.regions) for rule in rules) == 62
    # each converts to YAML and back unchanged
    again = rules_from_list(yaml.safe_load(rules_to_yaml(rules))["rules"], "rules")
    assert [(r.id, r.match, r.regions) for r in again] == [(r.id, r.match, r.regions) for r in rules]


def test_shipped_library_is_the_converted_ctp_script_with_origin_and_licence():
    text = rules_file("pixel_rules_ctp.yaml").read_text()
    assert "RSNA" in text and "361e90f" in text and "RSNA Public License" in text
    fresh = parse_anonymizer_script(ANONYMIZER.read_text())
    assert [(r.id, r.match, r.regions) for r in library_rules()] == [(r.id, r.match, r.regions) for r in fresh]


def test_ctp_numbers_become_numeric_tests():
    expr = parse_expression('Rows.equals("512") * [0028,0011].isGreaterThan("999") * Modality.equals("12")')
    doc = expr_to_mapping(expr)
    assert doc == {"all": [{"tag": "Rows", "eq": 512}, {"tag": "Columns", "gt": 999},
                           {"tag": "Modality", "equals": "12"}]}  # Modality is text: stays a string test
    assert evaluate(expr, device(Rows=512, Columns=1000, Modality="12"))


def test_ctp_operators_precedence_and_comments():
    expr = parse_expression('!Modality.equals("CT") * ( SeriesDescription.containsIgnoreCase ("aaa") + '
                            'SeriesDescription.matches("R.port") ) // trailing comment')
    assert evaluate(expr, device(Modality="US", SeriesDescription="stent AAA"))
    assert evaluate(expr, device(Modality="US", SeriesDescription="Report"))
    assert not evaluate(expr, device(Modality="CT", SeriesDescription="Report"))
    assert not evaluate(expr, device(Modality="US", SeriesDescription="none"))


@pytest.mark.parametrize(("script", "message"), [
    ('{ Modality.equals("US") }', "no region"),
    ('{ Modality.equals("US") \n', "never closed"),
    ('{ Modality.equalz("US") } (0,0,1,1)', "unknown method 'equalz'"),
    ('{ Modality.equals("US") * } (0,0,1,1)', "expected Keyword.method"),
    ('\n\n{ Nonsense.equals("US") } (0,0,1,1)', "line 3: unknown DICOM keyword"),
    ('{ Modality.equals("US") } (0,0,0,1)', "zero width"),
])
def test_ctp_syntax_errors_give_the_line(script, message):
    with pytest.raises(CTPSyntaxError, match=message):
        parse_anonymizer_script(script)


def test_ctp_rule_names_come_from_the_comments():
    rules = {r.id: r.name for r in parse_anonymizer_script(ANONYMIZER.read_text())}
    assert rules["ctp-026"] == "US / CX50"
    assert rules["ctp-001"] == "CT / CT Dose Series"


def test_burned_in_filter_becomes_the_may_carry_text_heuristic():
    heuristic = text_heuristic_from_filter(FILTER.read_text())
    assert heuristic == text_heuristic()  # the shipped file is this conversion
    assert evaluate(heuristic, device(BurnedInAnnotation="YES"))
    assert evaluate(heuristic, device(ImageType=["DERIVED", "SAVE"]))
    assert evaluate(heuristic, device(SecondaryCaptureDeviceManufacturer="Acme"))
    assert not evaluate(heuristic, device(ImageType=["ORIGINAL", "PRIMARY"], Modality="CT"))
