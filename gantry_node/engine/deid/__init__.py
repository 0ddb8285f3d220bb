"""The pure de-identification core: dataset + policy in, dataset + change record out."""

from gantry_node.engine.deid.engine import Change, DeidError, DeidResult, deidentify
from gantry_node.engine.deid.identity import Identity
from gantry_node.engine.deid.markers import CLEAN_PIXEL_DATA, add_method_code
from gantry_node.engine.deid.policy import (
    OPTIONS,
    Policy,
    PolicyError,
    default_policy,
    policy_from_mapping,
)
from gantry_node.engine.deid.pseudonyms import Keys, SecretError, new_secret
from gantry_node.engine.deid.scan import Finding, findings_dataframe, findings_table, scan
from gantry_node.engine.deid.verify import verify

__all__ = [
    "CLEAN_PIXEL_DATA", "OPTIONS", "Change", "DeidError", "DeidResult", "Finding", "Identity",
    "Keys", "Policy", "PolicyError", "SecretError", "add_method_code", "default_policy",
    "deidentify", "findings_dataframe", "findings_table", "new_secret",
    "policy_from_mapping", "scan", "verify",
]
