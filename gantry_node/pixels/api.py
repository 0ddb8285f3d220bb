"""File-level operations behind `gantry-node rules ...` and the Session pixel methods.

The pure work lives in the other modules; here files are read and written."""

from __future__ import annotations

from pathlib import Path

import yaml

from gantry_node.pixels.ctp import parse_anonymizer_script, text_heuristic_from_filter
from gantry_node.pixels.expr import expr_to_mapping
from gantry_node.pixels.library import CTP_ORIGIN, HEURISTIC_FILE, LIBRARY_FILE
from gantry_node.pixels.rules import rules_to_yaml


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
