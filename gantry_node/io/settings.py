"""Loading the two settings the core takes as values, the policy and the site secret, from
files (the core itself reads no files)."""

from __future__ import annotations

from pathlib import Path

from gantry_node.engine.deid.policy import Policy, PolicyError, default_policy, policy_from_mapping
from gantry_node.engine.deid.pseudonyms import MIN_SECRET_BYTES, Keys, SecretError
from gantry_node.io.yamlfile import read_yaml


def load_policy(path: str | Path | None) -> Policy:
    """Read a policy YAML file; None gives the default policy."""
    if path is None:
        return default_policy()
    return policy_from_mapping(read_yaml(path, PolicyError, what=" policy"), where=str(path))


def load_keys(path: str | Path) -> Keys:
    """The site secret from a file (surrounding white space ignored)."""
    path = Path(path)
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        raise SecretError(f"secret file {path} does not exist") from None
    except OSError as exc:
        raise SecretError(f"secret file {path}: {exc.strerror}") from None
    if len(data) < MIN_SECRET_BYTES:
        raise SecretError(f"secret file {path} holds {len(data)} bytes; need >= {MIN_SECRET_BYTES}")
    return Keys(data)
