"""Reading a YAML file with errors that name the file (one wording for every config file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: str | Path, error: type[Exception], where: str | None = None, what: str = "") -> Any:
    """The parsed document, or `error` naming `where` (default: the path): 'cannot read{what}'
    or 'not valid YAML'."""
    where = where or str(path)
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{where}: cannot read{what}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{where}: not valid YAML: {exc}") from None
