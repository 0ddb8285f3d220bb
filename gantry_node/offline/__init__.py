"""The offline front door: Session (curating a folder or archive) over the node's engine.

Knows nothing of the network node (an import-linter contract holds it)."""

from gantry_node.offline.findings import Findings, PhiFinding
from gantry_node.offline.session import Session

__all__ = ["Findings", "PhiFinding", "Session"]
