"""gantry-node: a DICOM node that de-identifies in flight, and the same engine as a library."""

from gantry_node.version import __version__

__all__ = ["__version__", "Session"]


def __getattr__(name: str):
    # `from gantry_node import Session` without importing pandas & co for every CLI call
    if name == "Session":
        from gantry_node.offline.session import Session

        return Session
    raise AttributeError(f"module 'gantry_node' has no attribute {name!r}")
