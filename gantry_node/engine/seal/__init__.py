"""Reversible de-identification by the standard (PS3.15 E.1.2): the original attributes sealed
with CMS to the honest broker's certificate, and re-identification with the broker's key."""

from gantry_node.engine.seal.certs import (
    BROKER_REMINDER,
    CertificateError,
    init_keys,
    load_certificate,
    load_private_key,
    load_recipient,
    load_recipients,
)
from gantry_node.engine.seal.cms import SealError, make_sealer, seal, unseal
from gantry_node.engine.seal.config import SealingConfig, SealingConfigError, parse_sealing_section
from gantry_node.engine.seal.recover import Recovered, identity_summary, recover

__all__ = [
    "BROKER_REMINDER", "CertificateError", "Recovered", "SealError", "SealingConfig", "SealingConfigError",
    "identity_summary", "init_keys", "load_certificate", "load_private_key", "load_recipient",
    "load_recipients", "make_sealer", "parse_sealing_section", "recover", "seal", "unseal",
]
