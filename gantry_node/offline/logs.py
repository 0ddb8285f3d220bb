"""The library's log: the `gantry_node.offline` logger, configured from the environment.

    GANTRY_LOG_LEVEL=INFO          # DEBUG, INFO, WARNING (default), ERROR
    GANTRY_LOG_FILE=session.log    # JSON lines appended to this file (with only a level: to stderr;
                                   # with neither: WARNING and up on stderr, Python's default)

Messages carry counts, internal instance ids and the paths the caller gave; never a value read
from a data set.
"""

from __future__ import annotations

import json
import logging
import os
import time

logger = logging.getLogger("gantry_node.offline")
_configured = False


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
               "level": record.levelname.lower(), "event": record.getMessage()}
        doc.update(getattr(record, "fields", {}))
        return json.dumps(doc, sort_keys=False, default=str)


def configure_from_env() -> None:
    """Once per process: the level and file from GANTRY_LOG_LEVEL and GANTRY_LOG_FILE."""
    global _configured
    if _configured:
        return
    _configured = True
    level = os.environ.get("GANTRY_LOG_LEVEL")
    if level:
        logger.setLevel(getattr(logging, level.upper(), logging.WARNING))
    path = os.environ.get("GANTRY_LOG_FILE")
    if path or level:
        handler = logging.FileHandler(path, encoding="utf-8") if path else logging.StreamHandler()
        handler.setFormatter(JsonLines())
        logger.addHandler(handler)


def log(level: int, event: str, **fields) -> None:
    logger.log(level, event + "".join(f" {k}={v}" for k, v in fields.items()), extra={"fields": fields})
