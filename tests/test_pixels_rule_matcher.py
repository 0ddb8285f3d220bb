"""RuleMatcher remembers which rule matches first by what the signatures read; it must give
exactly what evaluating every rule in order gives, on the first call and on remembered ones."""

from __future__ import annotations

import random

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset

from gantry_node.engine.pixels import expr as expressions
from gantry_node.engine.pixels.expr import readings
from gantry_node.engine.pixels.library import library_rules
from gantry_node.engine.pixels.rules import RuleMatcher, first_match, rules_from_list


def _tests(expr):
    if isinstance(expr, expressions.Test):
        yield expr
    elif isinstance(expr, expressions.Not):
        yield from _tests(expr.item)
    else:
        for e in expr.items:
            yield from _tests(e)


def _candidate_values(rules) -> dict[int, list]:
    """For each attribute the rules read: the values they compare with, near misses, and case
    variants, so that many signatures match and many nearly match."""
    values: dict[int, list] = {}
    for rule in rules:
        for test in _tests(rule.match):
            found = values.setdefault(test.tag, [None, ""])
            if test.op in ("lt", "le", "gt", "ge", "eq"):
                n = float(test.value)
                found += [int(n), int(n) + 1, int(n) - 1, f"{n}", "not a number"]
            elif test.op == "regex":
                found += ["", "X"]
            else:
                text = str(test.value)
                found += [text, text.lower(), f"AB {text} CD", text[:-1]]
    return values


def _dataset(rng: random.Random, values: dict[int, list]) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    for tag, choices in values.items():
        value = rng.choice(choices)
        if value is None or rng.random() < 0.3:
            continue
        keyword = keyword_for_tag(tag)
        if tag >> 16 == 0x0002:
            ds.file_meta.ImplementationVersionName = str(value)[:16]
        elif keyword in ("Rows", "Columns"):
            if isinstance(value, int) and 0 <= value < 65536:
                ds.add_new(tag, "US", value)
        elif keyword == "WindowWidth":
            ds.add_new(tag, "DS", str(value)[:16] if not isinstance(value, str) or value[:1].isdigit() else "80")
        else:
            ds.add_new(tag, "LO", str(value)[:64])
    return ds


def test_matcher_gives_what_plain_evaluation_gives_on_the_shipped_library():
    rules = library_rules()
    matcher = RuleMatcher(rules)
    rng = random.Random(7)
    values = _candidate_values(rules)
    datasets = [_dataset(rng, values) for _ in range(400)]
    matched = set()
    for _ in range(2):  # the second pass is answered from memory
        for ds in datasets:
            want = first_match(rules, ds)
            got = matcher.first_match(ds)
            assert got is want, (ds, want and want.id, got and got.id)
            if want is not None:
                matched.add(want.id)
    assert len(matched) >= 10  # the corpus exercises many signatures, not just "no match"


def test_first_match_wins_and_numbers_compare_as_numbers():
    rules = rules_from_list([
        {"id": "narrow", "match": {"all": [{"tag": "Modality", "equals": "US"}, {"tag": "Rows", "gt": 500}]},
         "regions": [[0, 0, 10, 10]]},
        {"id": "broad", "match": {"tag": "Modality", "equals": "US"}, "regions": []},
    ], "rules")
    matcher = RuleMatcher(rules)
    for rows, want in ((600, "narrow"), (480, "broad"), (1000, "narrow"), (600, "narrow"), (480, "broad")):
        ds = Dataset()
        ds.Modality, ds.Rows = "US", rows
        assert matcher.first_match(ds).id == want
    ct = Dataset()
    ct.Modality = "CT"
    assert matcher.first_match(ct) is None and first_match(rules, ct) is None


def test_an_undecodable_value_falls_back_to_plain_evaluation(monkeypatch):
    # A WindowWidth that does not decode: plain evaluation never reads it when Modality fails,
    # so the matcher must not fail on it either.
    from pydicom import config
    from pydicom.dataelem import RawDataElement

    rules = rules_from_list([
        {"id": "r", "match": {"all": [{"tag": "Modality", "equals": "US"}, {"tag": "WindowWidth", "gt": 5}]},
         "regions": []},
    ], "rules")
    assert readings(rules[0].match) == {(0x00080060, False), (0x00281051, True)}
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)
    ds = Dataset()
    ds.Modality = "CT"
    ds[0x00281051] = RawDataElement(0x00281051, "DS", 4, b"abcd", 0, False, True)
    assert RuleMatcher(rules).first_match(ds) is None
