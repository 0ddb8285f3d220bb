"""A device's key: how reasons, logs and the rules scaffold name a device without quoting it.

Manufacturer and Manufacturer's Model Name are device identity, removed by default; a reason
that quoted them would carry them into audit.log, the journal and `quarantine list`. The key is
"d-" and six base32 characters of the keyed hash (the site secret's HMAC, as for pseudonyms) of
manufacturer, model and image size, the attributes `gantry-node rules scaffold` groups devices
by, so the scaffold can print the same key next to each device it lists. Without keys (a
library caller that built the stage without them) the hash is unkeyed SHA-256: it still quotes
nothing, but a short list of vendor names could be tried against it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from gantry_node.engine.deid import Keys

DEVICE_KEYS = ("Manufacturer", "ManufacturerModelName", "Rows", "Columns")
DOMAIN = "pixels-device"


def device_text(values: Mapping[str, Any] | Any) -> str:
    """The hashed text: the four attributes, stripped, NUL-separated (a Dataset or a mapping)."""
    return "\x00".join(_text(values.get(k)) for k in DEVICE_KEYS)


def device_key(values: Mapping[str, Any] | Any, keys: Keys | None = None) -> str:
    text = device_text(values)
    if keys is not None:
        return "d-" + keys.identifier(DOMAIN, text, 6).lower()
    digest = hashlib.sha256(f"{DOMAIN}\x00{text}".encode()).digest()
    return "d-" + base64.b32encode(digest).decode()[:6].lower()


def _text(value: Any) -> str:
    if value is None:
        return ""
    value = getattr(value, "value", value)  # a DataElement from Dataset.get(keyword) is its value already
    return "" if value is None else str(value).strip()
