"""The shipped rule files in rules/: the CTP-derived machine library and text heuristic."""

from __future__ import annotations

from functools import lru_cache

import yaml

from gantry_node.engine.pixels.expr import Expr, RuleError, expr_from_mapping
from gantry_node.engine.pixels.rules import Rule, rules_from_list
from gantry_node.engine.resources import rules_file

LIBRARY_FILE = "pixel_rules_ctp.yaml"
HEURISTIC_FILE = "pixel_text_heuristic_ctp.yaml"

CTP_ORIGIN = (
    "Converted from RSNA Clinical Trial Processor (CTP) {name}\n"
    "(https://github.com/johnperry/CTP, commit 361e90f, 2025-05-13), contributed by many sites.\n"
    "Licence: RSNA Public License (https://mircwiki.rsna.org/index.php?title=RSNA_Public_License).\n"
    "Regenerate with: gantry-node rules import-ctp {name} --out rules/{out}\n"
    "It is the user's responsibility to review images and confirm that all PHI is removed."
)


@lru_cache(maxsize=1)
def library_rules() -> tuple[Rule, ...]:
    where = f"rules/{LIBRARY_FILE}"
    doc = yaml.safe_load(rules_file(LIBRARY_FILE).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or "rules" not in doc:
        raise RuleError(f"{where}: expected a mapping with a 'rules:' list")
    return tuple(rules_from_list(doc["rules"], f"{where}: rules", id_prefix=LIBRARY_FILE.removesuffix(".yaml")))


@lru_cache(maxsize=1)
def text_heuristic() -> Expr:
    """CTP's "may carry burned-in text" heuristic (the negated BurnedInPixelsFilter)."""
    path = rules_file(HEURISTIC_FILE)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or "may_carry_text" not in doc:
        raise RuleError(f"rules/{HEURISTIC_FILE}: expected a 'may_carry_text:' expression")
    return expr_from_mapping(doc["may_carry_text"], f"rules/{HEURISTIC_FILE}: may_carry_text")
